"""SIP requests and responses as objects, and their serialisation (RFC 3261 §7).

Why typed views are properties over raw headers: a PBX relays far more header text than it
reads, so parsing Address/Via values is deferred to first access and cached against the raw
string it came from.  Changing a header through ``headers`` therefore invalidates the view by
itself; the returned objects are shared with the cache and must not be mutated in place
(``copy()`` them, or assign through the property setters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Self, TypeVar, cast

from pypbx.sip._lex import MAX_LIST_VALUES, TOKEN_RE, split_outside
from pypbx.sip.address import Address
from pypbx.sip.errors import SipParseError
from pypbx.sip.headers import Headers
from pypbx.sip.status import reason_phrase
from pypbx.sip.uri import SipURI
from pypbx.sip.via import Via

_T = TypeVar("_T")
_MAX_CSEQ = 2**31 - 1
_MAX_EXPIRES = 2**32 - 1


def parse_cseq(text: str) -> tuple[int, str]:
    """``CSeq: 314159 INVITE`` -> (314159, 'INVITE'); the number is below 2**31 (§8.1.1.5)."""
    parts = text.split()
    if len(parts) != 2:
        raise SipParseError("Bad CSeq")
    number, method = parts
    if not (number.isascii() and number.isdigit() and len(number) <= 10):
        raise SipParseError("Bad CSeq")
    value = int(number)
    if value > _MAX_CSEQ or not TOKEN_RE.fullmatch(method):
        raise SipParseError("Bad CSeq")
    return value, method


def _parse_vias(fields: tuple[str, ...]) -> list[Via]:
    values = [value for field in fields for value in split_outside(field, ",")]
    if len(values) > MAX_LIST_VALUES:
        raise SipParseError("Bad Via")
    return [Via.parse(value) for value in values]


def _parse_top_via(field: str) -> Via:
    return Via.parse(field.partition(",")[0] if '"' not in field else split_outside(field, ",")[0])


def _parse_from(text: str) -> Address:
    return Address.parse(text, "From")


def _parse_to(text: str) -> Address:
    return Address.parse(text, "To")


class Message:
    """What requests and responses share: headers, body and typed header views.

    Properties for mandatory headers (call_id, cseq, from_addr, to_addr, top_via) raise
    ``SipParseError`` when the header is missing or malformed; ``parse_message`` has already
    checked them for every message it returns.  List views (vias, contacts, routes,
    record_routes) are parsed lazily and may raise ``SipParseError`` on first access.
    """

    headers: Headers
    body: bytes
    _cache: dict[str, tuple[object, object]]

    def _view(self, key: str, raw: _T, parse: Callable[[_T], object]) -> object:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == raw:
            return hit[1]
        value = parse(raw)
        self._cache[key] = (raw, value)
        return value

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"Missing {name}")
        return value

    def _single(self, key: str, name: str, parse: Callable[[str], object]) -> object:
        """The parsed first value of mandatory header ``name`` (lookup key ``key``).

        ``_required`` plus ``_view`` in one call with the index read directly: these views are
        read several times per message by every layer, so their cost is mostly call overhead.
        """
        raw = self.headers._first_values().get(key)
        if raw is None:
            raise SipParseError(f"Missing {name}")
        hit = self._cache.get(name)
        if hit is not None and hit[0] == raw:
            return hit[1]
        value = parse(raw)
        self._cache[name] = (raw, value)
        return value

    # -- mandatory headers -------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        value = self.headers._first_values().get("call-id")
        if value is None:
            raise SipParseError("Missing Call-ID")
        if not value:
            raise SipParseError("Bad Call-ID")
        return value

    @call_id.setter
    def call_id(self, value: str) -> None:
        self.headers.set("Call-ID", value)

    @property
    def cseq(self) -> tuple[int, str]:
        return cast(tuple[int, str], self._single("cseq", "CSeq", parse_cseq))

    @cseq.setter
    def cseq(self, value: tuple[int, str]) -> None:
        self.headers.set("CSeq", f"{value[0]} {value[1]}")

    @property
    def from_addr(self) -> Address:
        return cast(Address, self._single("from", "From", _parse_from))

    @from_addr.setter
    def from_addr(self, value: Address) -> None:
        self.headers.set("From", str(value))

    @property
    def to_addr(self) -> Address:
        return cast(Address, self._single("to", "To", _parse_to))

    @to_addr.setter
    def to_addr(self, value: Address) -> None:
        self.headers.set("To", str(value))

    @property
    def top_via(self) -> Via:
        hit = self._cache.get("Via")
        raw = self.headers._first_values().get("via")
        if hit is not None and hit[0] == raw:  # the usual case, inlined: the hottest view
            return cast(Via, hit[1])
        return cast(Via, self._single("via", "Via", _parse_top_via))

    @top_via.setter
    def top_via(self, value: Via) -> None:
        vias = self.vias
        vias[0:1] = [value]
        self.vias = vias

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first (a fresh list; the Via objects are shared)."""
        fields = tuple(self.headers.get_fields("Via"))
        return list(cast(list[Via], self._view("all-Via", fields, _parse_vias)))

    @vias.setter
    def vias(self, value: list[Via]) -> None:
        self.headers.replace_all("Via", [str(via) for via in value])

    def forget_views(self) -> None:
        """Drop the parsed views; the next access parses again from the headers.

        For messages kept long but seldom read again (a completed transaction's request and
        final response, held 32 s on UDP to answer retransmissions): each view is a few
        objects the garbage collector walks on every full collection.
        """
        self._cache.clear()

    def replace_top_via(self, via: Via) -> None:
        """Put ``via`` in place of the top Via value, the ones below left as they are.

        When the top value has a field of its own (the usual case) only that field is
        rewritten, the others stay unparsed; ``via`` becomes the cached ``top_via`` at once,
        so the next access does not parse back what was just written.
        """
        top = self.headers.get("Via")
        if top is not None and "," not in top:
            self.headers.replace_first("Via", str(via))
        else:  # the top Via shares its field with others: rewrite them all
            self.top_via = via
        self._cache["Via"] = (self._required("Via"), via)

    # -- optional headers --------------------------------------------------------------------

    def _addresses(self, name: str) -> list[Address]:
        fields = tuple(self.headers.get_fields(name))

        def parse(raw: tuple[str, ...]) -> list[Address]:
            return [address for field in raw for address in Address.parse_list(field, name)]

        return list(cast(list[Address], self._view(name, fields, parse)))

    @property
    def has_wildcard_contact(self) -> bool:
        """True for ``Contact: *`` (REGISTER remove-all, §10.2.2)."""
        return any(value == "*" for value in self.headers.get_all("Contact"))

    @property
    def contacts(self) -> list[Address]:
        """Contact addresses; raises ``SipParseError`` for ``*`` (test has_wildcard_contact)."""
        if self.has_wildcard_contact:
            raise SipParseError("Wildcard Contact")
        return self._addresses("Contact")

    @contacts.setter
    def contacts(self, value: list[Address]) -> None:
        self.headers.replace_all("Contact", [str(address) for address in value])

    @property
    def routes(self) -> list[Address]:
        return self._addresses("Route")

    @property
    def record_routes(self) -> list[Address]:
        return self._addresses("Record-Route")

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not (value.isascii() and value.isdigit() and len(value) <= 10):
            raise SipParseError("Bad Max-Forwards")
        return int(value)

    @max_forwards.setter
    def max_forwards(self, value: int | None) -> None:
        if value is None:
            self.headers.remove("Max-Forwards")
        else:
            self.headers.set("Max-Forwards", value)

    @property
    def content_type(self) -> str | None:
        """The media type without parameters, lowercased ('application/sdp'), or None."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.partition(";")[0].strip().lower() or None

    @property
    def expires(self) -> int | None:
        """Expires in seconds (clamped to 2**32-1, §20.19); None if absent or not a number."""
        value = self.headers.get("Expires")
        if value is None or not (value.isascii() and value.isdigit()):
            return None
        return min(int(value), _MAX_EXPIRES)

    # -- output ------------------------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Wire form with canonical names and a Content-Length that matches ``body``."""
        lines = [
            f"{name}: {value}"
            for key, name, value in self.headers._fields
            if key != "content-length"
        ]  # a list comprehension: a generator here cost a resumption per field
        lines.insert(0, self.start_line())
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode() + self.body

    def copy(self) -> Self:
        raise NotImplementedError


@dataclass(init=False, repr=False, eq=True)
class Request(Message):
    """A SIP request; ``method`` is case-sensitive (§7.1)."""

    method: str
    uri: SipURI
    headers: Headers
    body: bytes

    def __init__(
        self, method: str, uri: SipURI, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = Headers() if headers is None else headers
        self.body = body
        self._cache = {}

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def copy(self) -> Self:
        return type(self)(self.method, self.uri.copy(), self.headers.copy(), self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} Call-ID={self.headers.get('Call-ID')}>"


@dataclass(init=False, repr=False, eq=True)
class Response(Message):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers
    body: bytes

    def __init__(
        self, status: int, reason: str | None = None, headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:  # fmt: skip
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason
        self.headers = Headers() if headers is None else headers
        self.body = body
        self._cache = {}

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def copy(self) -> Self:
        return type(self)(self.status, self.reason, self.headers.copy(), self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} Call-ID={self.headers.get('Call-ID')}>"


_COPIED = MappingProxyType({"via": 0, "from": 1, "to": 2, "call-id": 3, "cseq": 4})


def _copied_order(field: tuple[str, str, str]) -> int:
    return _COPIED[field[0]]


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """A response to ``request`` per §8.2.6.2: Vias, From, To, Call-ID and CSeq copied.

    ``to_tag`` is appended to To unless To already has a tag.  Record-Route is not copied
    (dialog-creating UAS code does that); Timestamp is echoed in 100 Trying (§8.2.6.1).
    Tolerates a request whose headers are missing or malformed (the 400 path).
    """
    source = request.headers
    # One pass, then a stable sort into Via, From, To, Call-ID, CSeq order, unless they came
    # in that order already (as most requests have them: the sort was a call per field).
    fields: list[tuple[str, str, str]] = []
    last = 0
    ordered = True
    for field in source._fields:
        order = _COPIED.get(field[0])
        if order is not None:
            if order < last:
                ordered = False
            last = order
            fields.append(field)
    if not ordered:
        fields.sort(key=_copied_order)
    if to_tag is not None:
        for index, (key, name, value) in enumerate(fields):
            if key == "to":
                try:
                    has_tag = request.to_addr.tag is not None
                except SipParseError:
                    break
                if not has_tag:
                    fields[index] = (key, name, f"{value};tag={to_tag}")
                break
    if status == 100:
        fields.extend(field for field in source._fields if field[0] == "timestamp")
    response = Response(status, reason, Headers._trusted(fields))
    # The views parsed for the request hold for the response wherever the raw text is the
    # same (every cache entry is checked against its raw text on use), so Via, From, CSeq
    # and an untouched To are not parsed a second time.
    response._cache = dict(request._cache)
    return response
