"""Extension listing commands (spec 8.17, 8.18).

`State` says whether the extension can be reached now. A phone extension is `Connected`
while a phone is registered for it; an API extension has no registration (an application
acts for it over HTTP), so it is `Connected` exactly while it is enabled.
"""

from __future__ import annotations

import re

from pypbx.api.config_xml import KNOWN_TYPES
from pypbx.api.context import CommandContext, Dialect
from pypbx.api.registry import Command, Param
from pypbx.api.xmlout import Node, container, leaf
from pypbx.store.records import ExtensionRecord

# Stored type -> O10 display type (spec 8.17); XE shows the stored type itself.
O10_TYPE_NAMES = {
    "SIP": "Phone",
    "API": "API extension",
    "IVR": "IVR extension",
    "ECHO": "Echo test",
}

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


def _available(record: ExtensionRecord, ctx: CommandContext) -> bool:
    if record.type.casefold() == "api":
        return record.enabled
    return ctx.pbx.is_registered(record.id)


def _summary(record: ExtensionRecord, ctx: CommandContext) -> Node:
    ext_id = record.id if ctx.dialect is Dialect.XE else f"{record.id}@{ctx.settings.domain}"
    state = "Connected" if _available(record, ctx) else "Disconnected"
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
    records = sorted(await ctx.store.list_extensions(), key=_order)
    if wanted is not None:
        folded = wanted.strip().casefold()
        records = [r for r in records if _type_name(r, ctx.dialect).casefold() == folded]
    return [container("Extensions", (_summary(r, ctx) for r in records))]


async def list_extension_types(ctx: CommandContext) -> list[Node]:
    """Provisional shape (spec 8.18): what .NET serialises a list of strings to."""
    return [container("ExtensionTypes", (leaf("string", name) for name in KNOWN_TYPES))]


COMMANDS = (
    Command("ListExtensions", list_extensions, (Param("Type"),)),
    Command("ListExtensionTypes", list_extension_types),
)
