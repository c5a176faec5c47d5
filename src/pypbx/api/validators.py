"""Value checks for command parameters (spec section 0 types, section 8 "Our rule" columns).

Each validator takes the decoded, non-blank value and returns the normalised value or
raises ValueError; the request handler turns that into 302 for the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from urllib.parse import urlsplit

Validator = Callable[[str], object]

_NUMBER_STRING = re.compile(r"[A-Za-z0-9+*#@.\-_]{1,128}")
_DTMF = re.compile(r"[0-9*#A-Da-d]+")
MAX_CALL_ID_LENGTH = 64


def text(value: str) -> str:
    """Any text, used as sent (messages are not trimmed, spec 2.4)."""
    return value


def number_string(value: str) -> str:
    """Numbers are strings: `+062554670`, leading zeros and `101@localhost` occur."""
    value = value.strip()
    if not _NUMBER_STRING.fullmatch(value):
        raise ValueError("not a number-string")
    return value


def call_id(value: str) -> str:
    """Opaque and case-sensitive; anything non-empty up to 64 characters (spec 6.2)."""
    if len(value) > MAX_CALL_ID_LENGTH:
        raise ValueError("call id too long")
    return value


def _choice(value: str, allowed: tuple[str, ...]) -> str:
    folded = value.strip().casefold()
    for item in allowed:
        if item.casefold() == folded:
            return item
    raise ValueError(f"not one of {allowed}")


def choice(*allowed: str) -> Validator:
    """Case-insensitive enumeration; returns the canonical spelling."""

    def check(value: str) -> str:
        return _choice(value, allowed)

    return check


party = choice("caller", "callee", "all")
transferor_party = choice("caller", "callee")


def boolean(value: str) -> bool:
    return _choice(value, ("true", "false")) == "true"


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    def check(value: str) -> int:
        stripped = value.strip()
        if not stripped.isascii() or not stripped.lstrip("+-").isdigit():
            raise ValueError("not an integer")
        number = int(stripped)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ValueError("out of range")
        return number

    return check


def digits(max_length: int, min_length: int = 1) -> Validator:
    def check(value: str) -> str:
        stripped = value.strip()
        if not (stripped.isascii() and stripped.isdigit()):
            raise ValueError("not digits")
        if not min_length <= len(stripped) <= max_length:
            raise ValueError("wrong number of digits")
        return stripped

    return check


def url(value: str) -> str:
    """An absolute http(s) URL with a host."""
    stripped = value.strip()
    parts = urlsplit(stripped)
    if parts.scheme.casefold() not in ("http", "https") or not parts.hostname:
        raise ValueError("not an absolute http(s) URL")
    return stripped


def dtmf_keys(value: str) -> str:
    if not _DTMF.fullmatch(value):
        raise ValueError("invalid DTMF keys")
    return value.upper()


def email_address(value: str) -> str:
    stripped = value.strip()
    local, at, domain = stripped.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in stripped):
        raise ValueError("not an e-mail address")
    return stripped


def timestamp(value: str) -> datetime:
    """`yyyy-MM-dd HH:mm:ss`, `yyyy-MM-dd` or ISO 8601 (spec 3.4); naive = PBX local time."""
    stripped = value.strip()
    try:
        return datetime.strptime(stripped, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        pass
    try:
        parsed_date = date.fromisoformat(stripped)
    except ValueError:
        return datetime.fromisoformat(stripped)
    return datetime(parsed_date.year, parsed_date.month, parsed_date.day)
