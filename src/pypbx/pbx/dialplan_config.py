"""Dial plan rules from and to plain data: TOML tables and ConfigXML-style text fields.

Both front ends share the value syntax (`From`, `TimeCondition`, `Next`, see
`dialplan_rules` and `dialplan_time`) and differ only in key spelling and typing:

* TOML (`[[dialplan.rules]]`): lower_snake_case keys (`from`, `ring_time`, `on_busy`, ...);
  `order`, `strip_digits`, `ring_time` are TOML integers and `enabled` a TOML boolean,
  everything else a string. A rule without `order` comes right after the rules above it
  in the file (1 + the largest order so far), which is what "append" means in a file.
* Text fields (AddConfig/GetConfig, ExtensionType `DialPlanRule`): the PascalCase names of
  spec 9.2, every value a string; names are matched case-insensitively (spec 0); integers
  are decimal, `Enabled` is `true`/`false`.

In both, an empty optional value means the default (`CallerId` "" = unchanged, `OnBusy`
"" = end the call), `Next` is recognised case-insensitively, and `Pattern` and
`Destination` are required. Errors name the rule (TOML) and the key or field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pypbx.pbx.dialplan_patterns import DialPlanError, NumberPattern
from pypbx.pbx.dialplan_rules import (
    NEXT,
    Kind,
    Rule,
    RuleFieldError,
    format_caller_match,
    parse_caller_match,
)
from pypbx.pbx.dialplan_time import TimeCondition

__all__ = ["FIELD_NAMES", "rule_from_fields", "rule_to_fields", "rules_from_toml"]

# Rule attribute -> (TOML key, ConfigXML field), in the order of the spec's table.
_NAMES: dict[str, tuple[str, str]] = {
    "order": ("order", "Order"),
    "enabled": ("enabled", "Enabled"),
    "name": ("name", "Name"),
    "kind": ("kind", "Kind"),
    "from_": ("from", "From"),
    "pattern": ("pattern", "Pattern"),
    "destination": ("destination", "Destination"),
    "strip_digits": ("strip_digits", "StripDigits"),
    "add_prefix": ("add_prefix", "AddPrefix"),
    "caller_id": ("caller_id", "CallerId"),
    "ring_time": ("ring_time", "RingTime"),
    "on_busy": ("on_busy", "OnBusy"),
    "on_no_answer": ("on_no_answer", "OnNoAnswer"),
    "on_not_found": ("on_not_found", "OnNotFound"),
    "on_error": ("on_error", "OnError"),
    "time_condition": ("time_condition", "TimeCondition"),
}
FIELD_NAMES: tuple[str, ...] = tuple(pascal for _, pascal in _NAMES.values())
_REQUIRED = ("pattern", "destination")
_INTEGERS = ("order", "strip_digits", "ring_time")
_FALLBACKS = ("on_busy", "on_no_answer", "on_not_found", "on_error")
_INTEGER_TEXT = re.compile(r"[+-]?\d{1,9}")


def _optional(text: str) -> str | None:
    return text or None


def _fallback(text: str) -> str | None:
    if not text:
        return None
    return NEXT if text.casefold() == NEXT.casefold() else text


def _time_condition(text: str) -> TimeCondition | None:
    return TimeCondition.parse(text) if text else None


# Attribute -> parser of its (stripped) text value.
_TEXT_PARSERS: dict[str, Callable[[str], object]] = {
    "name": str,
    "kind": Kind.parse,
    "from_": parse_caller_match,
    "pattern": NumberPattern.compile,
    "destination": str,
    "add_prefix": str,
    "caller_id": _optional,
    "time_condition": _time_condition,
    **dict.fromkeys(_FALLBACKS, _fallback),
}


def _build(values: dict[str, Any], spelling: Callable[[str], str], where: str = "") -> Rule:
    try:
        return Rule(**values)
    except RuleFieldError as exc:
        raise DialPlanError(f"{where}{spelling(exc.field)}: {exc.problem}") from None


# --- TOML ---------------------------------------------------------------------------------

_TOML_KEYS = {toml: attr for attr, (toml, _) in _NAMES.items()}


def rules_from_toml(entries: Sequence[Mapping[str, object]]) -> list[Rule]:
    """The rules of `[[dialplan.rules]]` tables, in file order (DialPlan sorts them)."""
    rules: list[Rule] = []
    for index, entry in enumerate(entries, start=1):
        where = f"dial plan rule {index}"
        if not isinstance(entry, Mapping):
            raise DialPlanError(f"{where}: must be a table, got {type(entry).__name__}")
        name = entry.get("name")
        if isinstance(name, str) and name.strip():
            where += f" ({name.strip()!r})"
        values = _toml_values(entry, where + ": ")
        values.setdefault("order", 1 + max((rule.order for rule in rules), default=0))
        rules.append(_build(values, lambda attr: _NAMES[attr][0], where + ": "))
    return rules


def _toml_values(entry: Mapping[str, object], where: str) -> dict[str, Any]:
    for key in entry:
        if key not in _TOML_KEYS:
            raise DialPlanError(f"{where}unknown key {key!r}")
    for attr in _REQUIRED:
        if _NAMES[attr][0] not in entry:
            raise DialPlanError(f"{where}missing key {_NAMES[attr][0]!r}")
    values: dict[str, Any] = {}
    for key, raw in entry.items():
        attr = _TOML_KEYS[key]
        if attr in _INTEGERS:
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise DialPlanError(f"{where}{key}: must be an integer, got {raw!r}")
            values[attr] = raw
        elif attr == "enabled":
            if not isinstance(raw, bool):
                raise DialPlanError(f"{where}{key}: must be true or false, got {raw!r}")
            values[attr] = raw
        else:
            if not isinstance(raw, str):
                raise DialPlanError(f"{where}{key}: must be a string, got {raw!r}")
            values[attr] = _parse_text(attr, raw, f"{where}{key}: ")
    return values


def _parse_text(attr: str, raw: str, where: str) -> object:
    try:
        return _TEXT_PARSERS[attr](raw.strip())
    except DialPlanError as exc:
        raise DialPlanError(f"{where}{exc}") from None


# --- text fields (ConfigXML) --------------------------------------------------------------

_FIELD_KEYS = {pascal.casefold(): attr for attr, (_, pascal) in _NAMES.items()}


def rule_to_fields(rule: Rule) -> dict[str, str]:
    """Every field of `rule` as text, in the spec's order; `rule_from_fields` reverses it."""
    values: dict[str, str] = {
        "Order": str(rule.order),
        "Enabled": "true" if rule.enabled else "false",
        "Name": rule.name,
        "Kind": rule.kind.value,
        "From": format_caller_match(rule.from_),
        "Pattern": rule.pattern.text,
        "Destination": rule.destination,
        "StripDigits": str(rule.strip_digits),
        "AddPrefix": rule.add_prefix,
        "CallerId": rule.caller_id or "",
        "RingTime": str(rule.ring_time),
    }
    for attr in _FALLBACKS:
        values[_NAMES[attr][1]] = getattr(rule, attr) or ""
    values["TimeCondition"] = "" if rule.time_condition is None else str(rule.time_condition)
    return values


def rule_from_fields(fields: Mapping[str, str], *, default_order: int | None = None) -> Rule:
    """A rule from text fields; an absent or empty `Order` takes `default_order` (if given).

    Absent or empty optional fields take the spec's defaults, so a partial update is done
    by merging onto `rule_to_fields(old)` first.
    """
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, raw in fields.items():
        attr = _FIELD_KEYS.get(key.strip().casefold())
        if attr is None:
            raise DialPlanError(f"unknown field {key!r}")
        pascal = _NAMES[attr][1]
        if attr in seen:
            raise DialPlanError(f"field {pascal} given twice ({seen[attr]!r} and {key!r})")
        seen[attr] = key
        text = raw.strip()
        if attr in _INTEGERS:
            if text:
                if not _INTEGER_TEXT.fullmatch(text):
                    raise DialPlanError(f"{pascal}: must be an integer, got {raw!r}")
                values[attr] = int(text)
        elif attr == "enabled":
            if text:
                if text.casefold() not in ("true", "false"):
                    raise DialPlanError(f"{pascal}: must be true or false, got {raw!r}")
                values[attr] = text.casefold() == "true"
        else:
            values[attr] = _parse_text(attr, text, f"{pascal}: ")
    for attr in _REQUIRED:
        if attr not in values:
            raise DialPlanError(f"missing field {_NAMES[attr][1]}")
    if "order" not in values:
        if default_order is None:
            raise DialPlanError("missing field Order")
        values["order"] = default_order
    return _build(values, lambda attr: _NAMES[attr][1])
