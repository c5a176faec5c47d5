"""A REGISTER of the ordinary shape, parsed without the general parser's detours.

Why: a registration storm is two REGISTERs per phone per interval, and nearly all of them
come from SIPp or a phone in one shape: a plain start line, one ``Name: value`` per line in
printable ASCII, one Via, no body.  One C-level match vouches for that shape; the few checks
left are the ones ``parse_message`` makes, done with the same functions, so what this
returns is the very request (headers, views) the general parser would build.  Anything it
is not sure of (a message the general parser would refuse, answer 400, or read some other
way) makes it return None, and the general parser decides: it never raises.

The pattern is linear: every line ends at a CRLF that no value may contain, so a failed
match backtracks over each line once (``test_fuzz_parsers`` bounds it on 64 kB inputs).
"""

from __future__ import annotations

import re
from types import MappingProxyType

from pypbx.sip._lex import MAX_LIST_VALUES, PLAIN_PARAM
from pypbx.sip.address import Address, plain_name_addr
from pypbx.sip.errors import SipParseError
from pypbx.sip.headers import KNOWN_NAMES, Headers
from pypbx.sip.limits import Limits
from pypbx.sip.model import Request, parse_cseq
from pypbx.sip.parse_memo import ParseMemo
from pypbx.sip.uri import PLAIN_URI_PORT_SHAPE, SipURI
from pypbx.sip.via import Via

# Start line, header lines "Name: value" (a value starts and ends with a visible character,
# so the general parser's strip() is a no-op on it), the blank line, and nothing after it.
_REGISTER_RE = re.compile(
    rb"REGISTER ([\x21-\x7e]+) SIP/2\.0\r\n"
    rb"((?:[A-Za-z][A-Za-z0-9\-]*: [\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?\r\n)+)\r\n"
)
# The shape of a From the general parser vouches for without building it (plain_name_addr)
# with a port above 9999, which Address.parse accepts when below 65536.
_PORTED_FROM_RE = re.compile(f"<{PLAIN_URI_PORT_SHAPE}>{PLAIN_PARAM}*")
# The header names of the usual spellings -> (lookup key, canonical name).
_EXACT_NAMES = MappingProxyType(
    {
        **KNOWN_NAMES,
        **{known[1]: known for known in KNOWN_NAMES.values()},
        **{name.upper(): known for name, known in KNOWN_NAMES.items() if len(name) == 1},
    }
)
# Once each (a second Via the general parser checks in full: left to it).
_CORE = frozenset({"via", "from", "to", "call-id", "cseq"})


def parse_plain_register(
    data: bytes, limits: Limits, memo: ParseMemo | None = None
) -> Request | None:
    """The request ``parse_message`` would return for ``data``, or None when not sure.

    ``memo`` remembers the Request-URI, To, CSeq and Via parses (see ``parse_memo``): the same
    request either way, some of its views shared with earlier requests.
    """
    if len(data) > limits.max_line or len(data) > limits.max_message:
        return None  # so no line, nor the whole, can break a bound
    match = _REGISTER_RE.fullmatch(data)
    if match is None:
        return None
    uri_bytes, block = match.groups()
    lines = block.decode("ascii").split("\r\n")
    lines.pop()  # the empty string after the last CRLF
    if len(lines) > limits.max_headers:
        return None
    fields: list[tuple[str, str, str]] = []
    first: dict[str, str] = {}
    exact = _EXACT_NAMES
    for line in lines:
        name, _, value = line.partition(": ")
        known = exact.get(name) or _known(name)
        key = known[0]
        if key == "content-length":
            if value != "0":
                return None  # a body, or a length to check: the general parser's job
            continue
        fields.append((key, known[1], value))
        if key not in first:
            first[key] = value
    if len(first) == len(fields):  # no name twice, the usual case: presence is enough
        if not first.keys() >= _CORE:
            return None
    else:
        keys = [field[0] for field in fields]
        if any(keys.count(key) != 1 for key in _CORE):
            return None
    try:
        uri_text = uri_bytes.decode("ascii")
        uri = SipURI.parse(uri_text) if memo is None else memo.uri(uri_text)
    except SipParseError:
        return None
    request = Request("REGISTER", uri, Headers._trusted(fields))
    request.headers._index = first
    return request if _views(request, first, memo) else None


def _known(name: str) -> tuple[str, str]:
    """What the general parser makes of a header name outside the usual spellings."""
    lower = name.lower()
    return KNOWN_NAMES.get(lower) or (lower, name)


def _views(request: Request, first: dict[str, str], memo: ParseMemo | None) -> bool:
    """The checks parse_message makes on a request, the views they parse left in its cache."""
    cache = request._cache
    via = first["via"]
    if "," in via or '"' in via:
        return False  # several values, or quotes to split around: the general way
    try:
        cache["Via"] = (via, Via.parse(via) if memo is None else memo.via(via))
        from_ = first["from"]
        if not plain_name_addr(from_):
            ported = _PORTED_FROM_RE.fullmatch(from_)
            if ported is None or int(ported[1] or 0) > 65535 or from_.count(";") > MAX_LIST_VALUES:
                cache["From"] = (from_, Address.parse(from_, "From"))
        to = first["to"]
        cseq_text = first["cseq"]
        if memo is None:
            cache["To"] = (to, Address.parse(to, "To"))
            cseq = parse_cseq(cseq_text)
        else:
            cache["To"] = (to, memo.to(to))
            cseq = memo.cseq(cseq_text)
    except SipParseError:
        return False
    cache["CSeq"] = (cseq_text, cseq)
    if cseq[1] != "REGISTER" or " " in first["call-id"]:
        return False
    try:
        request.max_forwards  # noqa: B018  (the general parser's own check)
    except SipParseError:
        return False
    return True
