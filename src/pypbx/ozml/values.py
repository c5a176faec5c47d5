"""Attribute values as OzML writers actually spell them (spec 5.1, 5.2).

Ozeki's own material writes `repeat="True"`, `timeout="10"`, `Party="Caller"`; applications
written against it must keep working, so every enumerated or typed value is read leniently
here and a value that cannot be read falls back to the documented default with a warning
instead of failing the whole reply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal

from pypbx.ozml.verbs import LegName, PartyName

Warn = Callable[[str], None]

_TRUE = frozenset({"true", "1", "yes"})
_PARTIES: dict[str, PartyName] = {"caller": "caller", "callee": "callee", "all": "all"}
_LEGS: dict[str, LegName] = {"caller": "caller", "callee": "callee"}
_WHITESPACE = re.compile(r"\s+")


def parse_bool(raw: str | None) -> bool:
    """`true`, `1`, `yes` in any case are true; anything else (or absence) is false."""
    return raw is not None and raw.strip().casefold() in _TRUE


def parse_number(raw: str | None, what: str, warn: Warn) -> float | None:
    """A finite decimal number, or None (with a warning when something unreadable was given)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        warn(f"{what}={raw!r} is not a number; ignored")
        return None
    if not math.isfinite(value):
        warn(f"{what}={raw!r} is not a finite number; ignored")
        return None
    return value


def parse_seconds(raw: str | None, what: str, warn: Warn) -> float | None:
    """A duration in seconds; negative values are read as 0 (spec 6.3)."""
    value = parse_number(raw, what, warn)
    if value is not None and value < 0:
        warn(f"{what}={raw!r} is negative; 0 used")
        return 0.0
    return value


def parse_count(raw: str | None, what: str, warn: Warn, *, minimum: int = 1) -> int | None:
    """A whole number >= `minimum` (a decimal is truncated), or None."""
    value = parse_number(raw, what, warn)
    if value is None:
        return None
    if value < minimum or value > 1_000_000:
        warn(f"{what}={raw!r} is out of range; ignored")
        return None
    return int(value)


def parse_party(raw: str | None, what: str, warn: Warn) -> PartyName | None:
    """`caller`, `callee` or `all`, case-insensitive."""
    if raw is None or not raw.strip():
        return None
    party = _PARTIES.get(raw.strip().casefold())
    if party is None:
        warn(f"{what}={raw!r} is not caller, callee or all; ignored")
    return party


def parse_leg(raw: str | None, what: str, warn: Warn) -> LegName | None:
    """`caller` or `callee`, case-insensitive (a transferor is one party, never `all`)."""
    if raw is None or not raw.strip():
        return None
    leg = _LEGS.get(raw.strip().casefold())
    if leg is None:
        warn(f"{what}={raw!r} is not caller or callee; ignored")
    return leg


def parse_format(raw: str | None, warn: Warn) -> Literal["mp3", "wav"]:
    """`mp3` (default) or `wav`, case-insensitive."""
    folded = (raw or "").strip().casefold()
    if folded == "wav":
        return "wav"
    if folded not in ("", "mp3"):
        warn(f"Format={raw!r} is not mp3 or wav; mp3 used")
    return "mp3"


def collapse_whitespace(text: str) -> str:
    """Inner runs of whitespace and line breaks become one space (Speak text, spec 5.1)."""
    return _WHITESPACE.sub(" ", text).strip()
