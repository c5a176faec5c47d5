"""Extension listing commands (spec 8.17, 8.18).

`State` says whether the extension can be reached now. A phone extension is `Connected`
while a phone is registered for it; an API extension has no registration (an application
acts for it over HTTP), so it is `Connected` exactly while it is enabled. A ring group is
`Connected` while it is enabled and at least one member is (a call to it would ring
something). An enabled outside line that does not register is `Connected` (nothing to
wait for); one that registers is `Connected` when the PBX's `line_status(name)` (used
when the PBX offers that method) answers `Connected` or `Registered` (the registration
client's word), and `Disconnected` for any other answer, for None, or without the method.

Dial plan rules are configured with the same commands and share the id space, but they
are not extensions (nobody can call one), so they are not listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pypbx.api.config_xml import KNOWN_TYPES
from pypbx.api.context import CommandContext, Dialect
from pypbx.api.registry import Command, Param
from pypbx.api.xmlout import Node, container, leaf
from pypbx.store.records import ExtensionRecord, line_settings, ring_group_settings

# Stored type -> O10 display type (spec 8.17); XE shows the stored type itself.
O10_TYPE_NAMES = {
    "SIP": "Phone",
    "API": "API extension",
    "IVR": "IVR extension",
    "ECHO": "Echo test",
    "RINGGROUP": "Ringing group",
    "LINE": "Outside line",
}

# Configurable with AddConfig but not extensions: never listed.
NOT_LISTED = frozenset({"dialplanrule", "httpapi"})
# `line_status` answers meaning the line is up; anything else ("Registering", "Failed: 403
# Forbidden", ...) is Disconnected, the only other State spec 8.17 knows.
LINE_UP = frozenset({"connected", "registered"})
# Types a ring group cannot ring even when listed as members.
NOT_RINGABLE = frozenset({"dialplanrule", "line", "httpapi"})

_NUMERIC = re.compile(r"[0-9]+")


def _type_name(record: ExtensionRecord, dialect: Dialect) -> str:
    if dialect is Dialect.O10:
        return O10_TYPE_NAMES.get(record.type.upper(), record.type)
    return record.type


def _order(record: ExtensionRecord) -> tuple[int, int, str]:
    """By extension number ascending (numeric ids numerically, then the rest by text)."""
    if _NUMERIC.fullmatch(record.id):
        return (0, int(record.id), record.id)
    return (1, 0, record.id)


def _line_connected(record: ExtensionRecord, ctx: CommandContext) -> bool:
    if not record.enabled:
        return False
    if not line_settings(record).register:
        return True
    status: Callable[[str], str | None] | None = getattr(ctx.pbx, "line_status", None)
    if status is None:
        return False
    answer = status(record.id)
    return answer is not None and answer.strip().casefold() in LINE_UP


def _available(record: ExtensionRecord, ctx: CommandContext, groups: frozenset[str]) -> bool:
    """Whether a call to `record` would reach something now (`groups`: the groups that do)."""
    kind = record.type.casefold()
    if kind == "api":
        return record.enabled
    if kind == "ringgroup":
        return record.id in groups
    if kind == "line":
        return _line_connected(record, ctx)
    return ctx.pbx.is_registered(record.id)


def _available_groups(records: list[ExtensionRecord], ctx: CommandContext) -> frozenset[str]:
    """Enabled groups with an available member, members being groups too (even in a loop):
    grown from the groups with a directly available member until nothing changes."""
    by_id = {record.id: record for record in records}
    members = {
        record.id: [
            by_id[member]
            for member in ring_group_settings(record).members
            if member in by_id and by_id[member].type.casefold() not in NOT_RINGABLE
        ]
        for record in records
        if record.type.casefold() == "ringgroup" and record.enabled
    }
    available: set[str] = set()
    direct: dict[str, bool] = {}
    changed = True
    while changed:
        changed = False
        for group_id, group_members in members.items():
            if group_id in available:
                continue
            for member in group_members:
                if member.type.casefold() == "ringgroup":
                    reachable = member.id in available
                else:
                    if member.id not in direct:
                        direct[member.id] = _available(member, ctx, frozenset())
                    reachable = direct[member.id]
                if reachable:
                    available.add(group_id)
                    changed = True
                    break
    return frozenset(available)


def _summary(record: ExtensionRecord, ctx: CommandContext, groups: frozenset[str]) -> Node:
    ext_id = record.id if ctx.dialect is Dialect.XE else f"{record.id}@{ctx.settings.domain}"
    state = "Connected" if _available(record, ctx, groups) else "Disconnected"
    return container(
        "ExtensionSummary",
        [
            leaf("Id", ext_id),
            leaf("PhoneNumber", record.id),
            leaf("Type", _type_name(record, ctx.dialect)),
            leaf("State", state),
        ]
        if ctx.dialect is Dialect.O10
        else [
            # XE documents Id and Type only; PhoneNumber and State follow as harmless extras.
            leaf("Id", ext_id),
            leaf("Type", _type_name(record, ctx.dialect)),
            leaf("PhoneNumber", record.id),
            leaf("State", state),
        ],
    )


async def list_extensions(ctx: CommandContext) -> list[Node]:
    wanted = ctx.arg("Type", str)
    everything = await ctx.store.list_extensions()
    records = sorted((r for r in everything if r.type.casefold() not in NOT_LISTED), key=_order)
    if wanted is not None:
        folded = wanted.strip().casefold()
        records = [r for r in records if _type_name(r, ctx.dialect).casefold() == folded]
    groups = _available_groups(everything, ctx)
    return [container("Extensions", [_summary(r, ctx, groups) for r in records])]


async def list_extension_types(ctx: CommandContext) -> list[Node]:
    """Provisional shape (spec 8.18): what .NET serialises a list of strings to."""
    return [container("ExtensionTypes", (leaf("string", name) for name in KNOWN_TYPES))]


COMMANDS = (
    Command("ListExtensions", list_extensions, (Param("Type"),)),
    Command("ListExtensionTypes", list_extension_types),
)
