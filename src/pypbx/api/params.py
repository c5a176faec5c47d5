"""Request parameters: strict decoding and Ozeki's lookup rules (spec 2.3-2.5).

aiohttp's own query parsing silently tolerates malformed escapes and invalid UTF-8, but
the spec turns those into code 300, so the raw query string and body are decoded here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_plus

# A '%' not followed by two hex digits.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ParamsParseError(ValueError):
    """The query string or body cannot be decoded; the message is the 300 reason."""


def normalize_name(name: str) -> str:
    """Names are trimmed (an O10 example has a stray space) and matched without case."""
    return name.strip().casefold()


def _decode(part: str) -> str:
    if _BAD_ESCAPE.search(part):
        raise ParamsParseError("malformed percent-encoding")
    try:
        return unquote_plus(part, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ParamsParseError("invalid UTF-8 in request") from exc


def parse_urlencoded(raw: str) -> list[tuple[str, str]]:
    """Split `a=1&b=2` into decoded pairs in order; a name without `=` has an empty value."""
    pairs: list[tuple[str, str]] = []
    for piece in raw.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((_decode(name), _decode(value)))
    return pairs


def first_occurrences(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Case-folded name -> first non-blank value.

    Blank values are dropped before choosing, so `X=&X=1` means X=1: a blank parameter is
    "as if absent" (spec 2.4), and an absent one cannot shadow a later occurrence.
    """
    result: dict[str, str] = {}
    for name, value in pairs:
        key = normalize_name(name)
        if key and value.strip() and key not in result:
            result[key] = value
    return result


class Params:
    """The merged parameters of one request (body values win over query values)."""

    def __init__(self, query: Mapping[str, str], body: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = {**query, **(body or {})}

    def get(self, *names: str) -> str | None:
        """The value of the first of `names` (canonical name, then aliases) that is present."""
        for name in names:
            value = self._values.get(normalize_name(name))
            if value is not None:
                return value
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._values
