"""Lexical primitives shared by the header-value parsers (RFC 3261 §25.1).

Why a module of its own: URI, Address and Via parsing all need the same few operations
(splitting outside quoted strings and ``<...>``, parameter lists, host:port, quoting), and
keeping them here keeps each parser a short straight line.  Everything works on header values
that are already unfolded; splitting uses one compiled regex instead of a per-character loop.
"""

from __future__ import annotations

import re

from pypbx.sip.errors import SipParseError

TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# Values in one list header (Via, Contact, Route, ...) and parameters on one value.  Real
# messages carry a handful; the bound keeps a 64 KiB datagram of one-byte elements from
# costing thousands of object parses.
MAX_LIST_VALUES = 256
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*)")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
_QUOTED_PAIR_RE = re.compile(r"\\([\s\S])")
# Characters a quoted-pair may carry but plain qdtext may not (CR and LF excluded: see quote()).
_CONTROL_CHAR_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# gen-value = token / host / quoted-string (§25.1), loosened to "no separators" for the
# unquoted case because peers put '/', '@' or '=' in values.
_PARAM_VALUE_RE = re.compile(r'[^\s,;<>"]*|"(?:[^"\\]|\\[\s\S])*"')
# A parameter list without quotes, brackets, blanks or empty elements: what it splits into
# on ';' is what the general path below would find, already valid.
PLAIN_PARAM = r'(?:;[A-Za-z0-9\-.!%*_+`\'~]+(?:=[^\s,;<>"]*)?)'
_PLAIN_PARAMS_RE = re.compile(PLAIN_PARAM + "+")

# One element of a list: runs of quoted strings, <...> groups and ordinary characters.  An
# unterminated quote or bracket swallows the rest, which the element parser then rejects.
_ELEMENT = r'(?:"(?:[^"\\]|\\[\s\S])*(?:"|\\?\Z)|<[^>]*>?|[^"<%s])+'
_COMMA_ELEMENT_RE = re.compile(_ELEMENT % ",")
_SEMI_ELEMENT_RE = re.compile(_ELEMENT % ";")


def split_outside(text: str, sep: str) -> list[str]:
    """Split on ``sep`` (',' or ';') except inside quoted strings and ``<...>``.

    Elements are stripped and empty ones dropped, so ``a,,b`` and ``a;`` are tolerated.
    """
    if '"' not in text and "<" not in text:
        pieces = text.split(sep)
    else:
        regex = _COMMA_ELEMENT_RE if sep == "," else _SEMI_ELEMENT_RE
        pieces = regex.findall(text)
    return [p for p in (piece.strip() for piece in pieces) if p]


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``;name[=value]...`` into an ordered dict with lowercased names.

    Values are kept verbatim (quotes included), so serialising gives back what was received.
    ``what`` names the owner in the error ("Bad Via", "Bad From", ...).
    """
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if _PLAIN_PARAMS_RE.fullmatch(text) and text.count(";") <= MAX_LIST_VALUES:
        for piece in text[1:].split(";"):
            name, eq, value = piece.partition("=")
            params[name.lower()] = value if eq else None
        return params
    return _parse_params_general(text, what)


def _parse_params_general(text: str, what: str) -> dict[str, str | None]:
    """Every list ``parse_params`` accepts (stripped, non-empty), the plain ones included."""
    params: dict[str, str | None] = {}
    if text[0] != ";":
        raise SipParseError(f"Bad {what}")
    pieces = split_outside(text[1:], ";")
    if len(pieces) > MAX_LIST_VALUES:
        raise SipParseError(f"Bad {what}")
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.rstrip().lower()
        if not TOKEN_RE.fullmatch(name):
            raise SipParseError(f"Bad {what}")
        if eq:
            value = value.strip()
            if not _PARAM_VALUE_RE.fullmatch(value):
                raise SipParseError(f"Bad {what}")
            params[name] = value
        else:
            params[name] = None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialise a parameter dict back to ``;name[=value]`` form."""
    return "".join([f";{k}" if v is None else f";{k}={v}" for k, v in params.items()])


def parse_port(text: str, what: str) -> int:
    """A decimal port 0..65535 (ASCII digits only: ``str.isdigit`` alone accepts '٣')."""
    if not (text.isascii() and text.isdigit() and len(text) <= 5):
        raise SipParseError(f"Bad {what}")
    port = int(text)
    if port > 65535:
        raise SipParseError(f"Bad {what}")
    return port


def split_hostport(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host may be a bracketed IPv6 reference.

    The returned host never carries brackets; ``format_host`` adds them back.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"Bad {what}")
        host, rest = text[1:end], text[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise SipParseError(f"Bad {what}")
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"Bad {what}")
        return host, parse_port(rest[1:], what)
    host, colon, port_text = text.partition(":")
    if not _HOST_RE.fullmatch(host):
        raise SipParseError(f"Bad {what}")
    return host, (parse_port(port_text, what) if colon else None)


def format_host(host: str) -> str:
    """Bracket IPv6 literals, leave names and IPv4 alone."""
    return f"[{host}]" if ":" in host else host


def format_hostport(host: str, port: int | None) -> str:
    return format_host(host) if port is None else f"{format_host(host)}:{port}"


def quoted_end(text: str, start: int) -> int:
    """Index just past the quoted string opening at ``text[start]``, or -1 if unterminated."""
    i = start + 1
    n = len(text)
    while i < n:
        quote = text.find('"', i)
        if quote < 0:
            return -1
        # An odd run of backslashes before the quote escapes it.
        backslashes = 0
        j = quote - 1
        while j > start and text[j] == "\\":
            backslashes += 1
            j -= 1
        if backslashes % 2 == 0:
            return quote + 1
        i = quote + 1
    return -1


def unquote(inner: str) -> str:
    """Undo quoted-pair escapes inside a quoted string (without its quotes)."""
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def quote(text: str) -> str:
    """Make a quoted string; CR and LF become spaces so no value can inject a header line.

    Other control characters are written as quoted-pairs (the only form §25.1 allows for them),
    so a display name read from RFC 4475 intmeth serialises to something that parses again.
    """
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if _CONTROL_CHAR_RE.search(text):
        text = _CONTROL_CHAR_RE.sub(r"\\\g<0>", text)
    return '"' + text + '"'
