"""What a command handler receives: validated arguments plus the PBX seams.

The store is typed by the methods the API actually calls (a Protocol) rather than by the
concrete class, so handlers can be tested against a small in-memory fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from pypbx.api.settings import ApiSettings
from pypbx.pbx.control import PbxControl
from pypbx.store.records import (
    CallHistoryRecord,
    ExtensionRecord,
    HistoryQuery,
    OfficeUserRecord,
)

T = TypeVar("T")


class Dialect(Enum):
    """Output shape, chosen by request path (spec 2.1 rule 4, 3.5)."""

    XE = "XE"  # path `/`
    O10 = "O10"  # path `/api`


class ApiStore(Protocol):
    """The part of `pypbx.store.store.Store` the HTTP API uses."""

    async def add_extension(self, record: ExtensionRecord, /) -> object: ...

    async def get_extension(self, extension_id: str, /) -> ExtensionRecord | None: ...

    async def update_extension(self, record: ExtensionRecord, /) -> object: ...

    async def remove_extension(self, extension_id: str, /) -> bool: ...

    async def list_extensions(self) -> list[ExtensionRecord]: ...

    async def get_user(self, username: str, /) -> OfficeUserRecord | None: ...

    async def query_history(
        self, query: HistoryQuery, /
    ) -> tuple[int, list[CallHistoryRecord]]: ...


@dataclass(frozen=True, slots=True)
class CommandContext:
    """One command invocation after authentication and parameter validation."""

    command_name: str  # canonical spelling, echoed in 302/303 messages
    requested_name: str  # the command value as sent (e.g. `ListCallHistory`)
    args: Mapping[str, object]  # canonical parameter name -> validated value
    dialect: Dialect
    settings: ApiSettings
    store: ApiStore
    pbx: PbxControl
    user: OfficeUserRecord | None  # None when authentication is off

    def arg(self, name: str, kind: type[T]) -> T | None:
        """A validated argument of the expected type, or None when it was not sent."""
        value = self.args.get(name)
        if value is None:
            return None
        if not isinstance(value, kind):
            raise TypeError(f"argument {name} is {type(value).__name__}, not {kind.__name__}")
        return value

    def require(self, name: str, kind: type[T]) -> T:
        """A mandatory argument (presence was checked before the handler ran)."""
        value = self.arg(name, kind)
        if value is None:
            raise KeyError(name)
        return value
