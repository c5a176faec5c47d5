"""The command registry: each command declares its names, parameter table and handler.

Commands documented but not yet implemented are registered without a handler so that
they answer 301 consistently and later work only has to add a handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from pypbx.api.context import CommandContext
from pypbx.api.params import Params
from pypbx.api.status import ApiError, Status
from pypbx.api.validators import Validator, text
from pypbx.api.xmlout import Node

Handler = Callable[[CommandContext], Awaitable[list[Node]]]


@dataclass(frozen=True, slots=True)
class Param:
    """One row of a command's parameter table (spec section 8)."""

    name: str  # canonical spelling, used in 302 messages
    mandatory: bool = False
    validator: Validator = text
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler | None = None  # None = documented but not implemented (301)
    params: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()
    admin_only: bool = False  # only admin users may run it when authentication is on

    def bind(self, params: Params) -> dict[str, object]:
        """Validate in table order so the first offending parameter is reported (spec 4.2)."""
        bound: dict[str, object] = {}
        for param in self.params:
            raw = params.get(param.name, *param.aliases)
            if raw is None:
                if param.mandatory:
                    raise ApiError(Status.INVALID_PARAMETER, param.name, self.name)
                continue
            try:
                bound[param.name] = param.validator(raw)
            except ValueError as exc:
                raise ApiError(Status.INVALID_PARAMETER, param.name, self.name) from exc
        return bound


class CommandRegistry:
    """Case-insensitive lookup of command values, aliases included (spec 2.4, 2.5)."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._by_name: dict[str, Command] = {}
        for command in commands:
            self.register(command)

    def register(self, command: Command) -> None:
        for name in (command.name, *command.aliases):
            key = name.casefold()
            if key in self._by_name:
                raise ValueError(f"command name {name!r} registered twice")
            self._by_name[key] = command

    def lookup(self, value: str) -> Command | None:
        return self._by_name.get(value.strip().casefold())

    def commands(self) -> list[Command]:
        """Each command once, in registration order."""
        return list(dict.fromkeys(self._by_name.values()))
