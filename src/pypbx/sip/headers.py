"""An ordered, case-insensitive header multimap (RFC 3261 §7.3).

Why raw strings: most headers of most messages are never looked at (they are relayed or
ignored), so values stay unparsed text and typed views (Address, Via, ...) are built on demand
by ``Message``.  Compact names are expanded on the way in so lookups and output always use
the canonical spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from types import MappingProxyType

from pypbx.sip._lex import TOKEN_RE, split_outside
from pypbx.sip.address import Address
from pypbx.sip.via import Via

__all__ = [
    "CANONICAL_NAMES",
    "KNOWN_NAMES",
    "Address",
    "Headers",
    "Via",
    "canonical_name",
    "header_key",
]

_COMPACT = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info",
        "Contact", "Content-Disposition", "Content-Encoding", "Content-Language",
        "Content-Length", "Content-Type", "CSeq", "Date", "Diversion", "Error-Info", "Event",
        "Expires", "From", "History-Info", "Identity", "Identity-Info", "In-Reply-To",
        "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
        "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
        "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
        "Record-Route", "Refer-Sub", "Refer-To", "Referred-By", "Reject-Contact", "Replaces",
        "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
        "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
        "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State",
        "Supported", "Target-Dialog", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
        "Warning", "WWW-Authenticate",
    )
}  # fmt: skip

CANONICAL_NAMES = MappingProxyType(_CANONICAL)  # lookup key -> canonical spelling

# Headers whose grammar is a comma-separated list, so one field may carry several values.
# Authorization, WWW-Authenticate, Date, ... contain commas inside one value and are absent.
_LIST_KEYS = frozenset(
    {
        "accept", "accept-contact", "accept-encoding", "accept-language", "alert-info",
        "allow", "allow-events", "call-info", "contact", "content-encoding",
        "content-language", "diversion", "error-info", "history-info", "in-reply-to", "path",
        "p-asserted-identity", "p-preferred-identity", "proxy-require", "reason",
        "record-route", "reject-contact", "require", "route", "security-client",
        "security-server", "security-verify", "service-route", "supported", "unsupported",
        "via", "warning",
    }
)  # fmt: skip

_Field = tuple[str, str, str]  # (lookup key, canonical name, value)

# NUL is refused in values except as a quoted-pair ("\\" NUL, §25.1), which is how a display
# name holding one (RFC 4475 intmeth) is written back by ``quote``.
_BARE_NUL_RE = re.compile(r"(?<!\\)\x00")


# Lowercased spelling (full or compact) -> (lookup key, canonical name), for one-lookup parsing.
KNOWN_NAMES = MappingProxyType(
    {**{key: (key, name) for key, name in _CANONICAL.items()},
     **{short: (key, _CANONICAL[key]) for short, key in _COMPACT.items()}}
)  # fmt: skip


# Exact spellings callers use (canonical, lowercase, compact) -> lookup key: most lookups
# are one dictionary hit instead of a lower() and a compact-form check.
_KEY_OF = MappingProxyType(
    {**{name: key for key, name in _CANONICAL.items()},
     **{key: key for key in _CANONICAL},
     **{short: key for short, key in _COMPACT.items()},
     **{short.upper(): key for short, key in _COMPACT.items()}}
)  # fmt: skip


def header_key(name: str) -> str:
    """The lookup key of a header name: lowercase, compact form expanded."""
    key = _KEY_OF.get(name)
    if key is not None:
        return key
    low = name.lower()
    return _COMPACT.get(low, low)


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name ('i' -> 'Call-ID'); unknown names unchanged."""
    return _CANONICAL.get(header_key(name), name)


def _check(name: str, value: str | int) -> tuple[str, str, str]:
    key = _KEY_OF.get(name)  # a known spelling is a valid token: no regex, no lower()
    if key is None:
        name = name.strip()
        if not TOKEN_RE.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        key = header_key(name)
    text = value.strip() if isinstance(value, str) else str(value).strip()
    if "\r" in text or "\n" in text or ("\x00" in text and _BARE_NUL_RE.search(text)):
        raise ValueError(f"header {name} value contains CR, LF or NUL")
    return key, _CANONICAL.get(key, name), text


class Headers:
    """Header fields in message order; names compared case-insensitively.

    Values given to ``add``/``set`` are checked for CR/LF so no caller can inject header lines.
    Why an index: the typed views of ``Message`` look their header up on every access (a
    handful of times per message), so the first value of each name is kept in a dict built
    on the first lookup and dropped by every change; ``_fields`` is only ever read outside.
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, items: Iterable[tuple[str, str | int]] = ()) -> None:
        self._fields: list[_Field] = [_check(name, value) for name, value in items]
        self._index: dict[str, str] | None = None

    @classmethod
    def _trusted(cls, fields: list[_Field]) -> Headers:
        """Wrap fields the parser has already validated (no copying, no checks)."""
        headers = cls()
        headers._fields = fields
        return headers

    def _first_values(self) -> dict[str, str]:
        index = self._index
        if index is None:
            # reversed: the first field of a name is written last, so it is the one kept
            index = self._index = {key: value for key, _, value in reversed(self._fields)}
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field's value exactly as received (unfolded, trimmed)."""
        index = self._index
        if index is None:
            index = self._first_values()
        key = _KEY_OF.get(name)
        return index.get(key if key is not None else header_key(name), default)

    def get_fields(self, name: str) -> list[str]:
        """Every field's raw value, without splitting comma-separated lists."""
        key = header_key(name)
        return [value for field_key, _, value in self._fields if field_key == key]

    def get_all(self, name: str) -> list[str]:
        """Every value; list-syntax headers (Via, Contact, Route, ...) split at commas."""
        key = header_key(name)
        values = [value for field_key, _, value in self._fields if field_key == key]
        if key not in _LIST_KEYS:
            return values
        out: list[str] = []
        for value in values:
            if "," in value:
                out.extend(split_outside(value, ","))
            else:
                out.append(value)
        return out

    def add(self, name: str, value: str | int) -> None:
        """Append a field after all existing ones."""
        field = _check(name, value)
        self._fields.append(field)
        index = self._index
        if index is not None and field[0] not in index:
            index[field[0]] = field[2]

    def insert_first(self, name: str, value: str | int) -> None:
        """Insert before the first field of that name (or at the top): a new Via, say."""
        new = _check(name, value)
        self._index = None
        for index, (field_key, _, _) in enumerate(self._fields):
            if field_key == new[0]:
                self._fields.insert(index, new)
                return
        self._fields.insert(0, new)

    def set(self, name: str, value: str | int) -> None:
        """Replace every field of that name by one, at the position of the first."""
        self.replace_all(name, [value])

    def replace_all(self, name: str, values: Iterable[str | int]) -> None:
        """Replace every field of that name by ``values``, at the position of the first."""
        new = [_check(name, value) for value in values]
        key = header_key(name)
        position = len(self._fields)
        kept: list[_Field] = []
        for field in self._fields:
            if field[0] == key:
                position = min(position, len(kept))
            else:
                kept.append(field)
        kept[position:position] = new
        self._fields = kept
        self._index = None

    def replace_first(self, name: str, value: str | int) -> None:
        """Replace the value of the first field of that name (or add it if there is none).

        Cheaper than ``replace_all`` when only the top one of several changes (a stamped Via).
        """
        new = _check(name, value)
        key = new[0]
        for index, field in enumerate(self._fields):
            if field[0] == key:
                self._fields[index] = new
                if self._index is not None:
                    self._index[key] = new[2]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        """Remove every field of that name (no error if there is none)."""
        key = header_key(name)
        self._fields = [field for field in self._fields if field[0] != key]
        if self._index is not None:
            self._index.pop(key, None)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _KEY_OF.get(name)  # as in get(): most names are spelled one of the usual ways
        index = self._index
        if index is None:
            index = self._first_values()
        return (key if key is not None else header_key(name)) in index

    def items(self) -> list[tuple[str, str]]:
        """(canonical name, value) pairs in order."""
        return [(name, value) for _, name, value in self._fields]

    def copy(self) -> Headers:
        return Headers._trusted(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[str]:
        return (name for _, name, _ in self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._fields] == [(k, v) for k, _, v in other._fields]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
