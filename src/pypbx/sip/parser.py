"""Bytes to ``Request``/``Response`` (RFC 3261 §7, §18.3), bounded and strict where it matters.

Why the split between drop and answer: an answer is worth sending only if the sender can match
it, which takes a readable request line and top Via (the branch is echoed back).  Bad responses,
unreadable start lines, broken header syntax and requests without a usable top Via are dropped;
every other fault carries the request so the caller can answer 400 (or 505 for a foreign SIP
version, 513 for an oversize body).  That includes missing, repeated or malformed From, To,
Call-ID and CSeq, which RFC 4475 (insuf, multi01, quotbal, scalar02) wants answered with a 400
rather than ignored into a retransmission storm.

The hot path is a handful of C-level passes (regex search for the blank line, decode, split)
plus one short Python loop over header lines; header values are not parsed here except for
the mandatory ones that transaction matching needs anyway.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from pypbx.sip._lex import MAX_LIST_VALUES, TOKEN_RE
from pypbx.sip.address import plain_name_addr
from pypbx.sip.errors import SipParseError
from pypbx.sip.fast_register import parse_plain_register
from pypbx.sip.headers import KNOWN_NAMES, Headers
from pypbx.sip.limits import DEFAULT_LIMITS, Limits
from pypbx.sip.model import Message, Request, Response
from pypbx.sip.parse_memo import ParseMemo
from pypbx.sip.uri import SipURI

# The end of the header section, found from its second-to-last LF: a leading "\r?" in the
# pattern would make the search try a match at every byte, ten times slower.
_BLANK_LINE_RE = re.compile(rb"\n\r?\n")
# Control characters other than HT and LF (CRLF was normalised to LF before the search).  A
# plain class keeps the common-case scan fast; only a hit pays for the exact rule, which lets
# a control character through as the second half of a quoted-pair ("\" then %x00-09 /
# %x0B-0C / %x0E-7F, §25.1: RFC 4475 intmeth quotes BEL, NUL and DEL that way), never CR.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BARE_CONTROL_RE = re.compile(r"\r|(?<!\\)[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every byte but the control ones (HT, LF and CR aside): what deleting these from the raw
# header bytes leaves is the control characters the regexes above would look at, so the
# usual message, with none and every CR in a CRLF, is cleared by two C-level passes.
_PLAIN_BYTES = bytes([9, 10, 13, *range(0x20, 0x7F), *range(0x80, 0x100)])
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
# A subset of what Via.parse accepts (host name or IPv4, port below 10000, up to 32 token
# parameters): a match is a valid Via without the cost of building one.
_PLAIN_VIA_RE = re.compile(
    r"SIP/2\.0/[A-Za-z]+ [A-Za-z0-9_][A-Za-z0-9_\-.]*(?::[0-9]{1,4})?"
    r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~]+)?){0,32}"
)
# A From value of the usual shape, "<sip:user@host[:port][;uri-params]>[;params]": the URI is
# the plain one SipURI.parse takes in one match (port kept below 10000) and the parameters the
# plain ones parse_params takes, so Address.parse is sure to accept it.  Nothing on most
# requests' way reads From (it is copied into responses as text), so a match spares building
# it just to check it; it is parsed on first use, as any view.
_FOREIGN_VERSION = "Unsupported SIP version"
# Header names exactly as most peers write them (lowercase, compact, canonical) -> what
# KNOWN_NAMES gives for them, so the usual header line needs no rstrip() and lower().
_EXACT_NAMES = MappingProxyType(
    {
        **KNOWN_NAMES,
        **{known[1]: known for known in KNOWN_NAMES.values()},
        **{name.upper(): known for name, known in KNOWN_NAMES.items() if len(name) == 1},
    }
)


def parse_message(
    data: bytes, limits: Limits = DEFAULT_LIMITS, memo: ParseMemo | None = None
) -> Request | Response:
    """Parse one whole message (a UDP datagram, or a frame from ``StreamFramer``).

    A REGISTER of the ordinary shape takes ``parse_plain_register``, which builds the same
    request or leaves the message to the general parse below; ``memo`` (the caller's own)
    spares it parses it made before (see ``parse_memo``).

    Leading CRLFs are skipped; CRLF and bare LF line ends are accepted; a missing
    Content-Length means the body is the rest of the datagram, and a datagram that ends right
    after its last header line (no empty line) is taken as complete.  Content-Length is
    consumed (removed from ``headers``) because ``len(body)`` is what ``serialize`` writes.
    Raises ``SipParseError`` and nothing else.
    """
    if data[:9] == b"REGISTER ":
        fast = parse_plain_register(data, limits, memo)
        if fast is not None:
            return fast
    return _parse_general(data, limits)


def _parse_general(data: bytes, limits: Limits) -> Request | Response:
    """Every message ``parse_message`` accepts (tests compare it with the fast path)."""
    if len(data) > limits.max_message:
        raise SipParseError("Message too large")
    data = bytes(data).lstrip(b"\r\n")  # bytes() is free for bytes, copies a bytearray
    if not data:
        raise SipParseError("Empty message")
    blank = _BLANK_LINE_RE.search(data)
    if blank is not None:
        start = blank.start()
        if start and data[start - 1] == 13:  # the CR of a CRLF
            start -= 1
        head_bytes, body = data[:start], data[blank.end() :]
    elif data.endswith(b"\n"):
        # The datagram delimits the message (RFC 4475 baddn, RFC 5118 §4.10 as archived).
        head_bytes, body = data[: -2 if data.endswith(b"\r\n") else -1], b""
    else:
        head_bytes, body = data, b""
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        # Old phones send Latin-1 display names; every byte decodes, control bytes are
        # caught below, and the value is re-encoded as UTF-8 on output.
        head = head_bytes.decode("latin-1")
    head = head.replace("\r\n", "\n")
    if (
        head_bytes.translate(None, _PLAIN_BYTES)
        or head_bytes.count(b"\r") != head_bytes.count(b"\r\n")
    ) and (_CONTROL_RE.search(head) and _BARE_CONTROL_RE.search(head)):
        raise SipParseError("Control character in header section")
    lines = head.split("\n")
    if len(lines[0]) > limits.max_line:
        raise SipParseError("Start line too long")
    message, line_problem = _parse_start_line(lines[0])
    message.headers = _parse_header_lines(lines, limits)
    body, body_error = _cut_body(message.headers, body, limits)
    # The body is now the single source of truth for its length; serialize() writes it.
    message.headers.remove("Content-Length")
    message.body = body
    if isinstance(message, Request):
        _check_request(message, line_problem, body_error)
    else:
        _check_core(message)
        if body_error is not None:
            raise SipParseError(body_error[0])
    return message


def _parse_start_line(line: str) -> tuple[Request | Response, str | None]:
    """The message with empty headers, plus a deferred error for requests (see module doc)."""
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != "SIP/2.0":
            raise SipParseError(_FOREIGN_VERSION)
        if not (len(code) == 3 and code.isascii() and code.isdigit() and code[0] in "123456"):
            raise SipParseError("Bad status line")
        return Response(int(code), reason.strip(), Headers._trusted([])), None
    parts = line.split()
    if len(parts) < 3 or not TOKEN_RE.fullmatch(parts[0]) or not _VERSION_RE.fullmatch(parts[-1]):
        raise SipParseError("Bad request line")
    method, version = parts[0], parts[-1]
    problem = None if version.upper() == "SIP/2.0" else _FOREIGN_VERSION
    uri: SipURI | None = None
    if len(parts) == 3:
        try:
            uri = SipURI.parse(parts[1])
        except SipParseError:
            uri = None
    if uri is None:
        # Keep the text so a 400 can still be built and logged.  LWS inside the Request-URI
        # (RFC 4475 lwsruri) lands here too: readable enough to answer.
        scheme, _, rest = " ".join(parts[1:-1]).partition(":")
        uri = SipURI(scheme=scheme.lower(), opaque=rest)
        problem = problem or "Bad Request-URI"
    return Request(method, uri, Headers._trusted([])), problem


def _parse_header_lines(lines: list[str], limits: Limits) -> Headers:
    fields: list[tuple[str, str, str]] = []
    append = fields.append
    # Continuation lines per field index, joined once at the end: joining as they come
    # copies the growing value each time, quadratic in a 64 KiB run of one-byte folds.
    folded: dict[int, list[str]] = {}
    max_line = limits.max_line
    max_headers = limits.max_headers
    # Both bounds are checked line by line only when one can be broken, so that the error
    # is still the one the first offending line earns.
    check_length = max(map(len, lines)) > max_line
    check_count = len(lines) - 1 > max_headers
    exact = _EXACT_NAMES
    for line in lines[1:]:
        if check_length and len(line) > max_line:
            raise SipParseError("Header line too long")
        # The usual line, "Name: value" with a known name spelled one of the usual ways,
        # costs one partition and one lookup; every other line takes the general way.
        name, colon, value = line.partition(":")
        known = exact.get(name)
        if known is None or not colon:
            if line[:1] in (" ", "\t"):
                # Folding: a continuation line joins the previous value with one space (§7.3.1).
                if not fields:
                    raise SipParseError("Malformed header line")
                extra = line.strip()
                if extra:
                    folded.setdefault(len(fields) - 1, []).append(extra)
                continue
            if not colon or not name:
                raise SipParseError("Malformed header line")
            name = name.rstrip()
            lower = name.lower()
            known = KNOWN_NAMES.get(lower)
            if known is None:
                if not TOKEN_RE.fullmatch(name):
                    raise SipParseError("Malformed header line")
                known = (lower, name)
        append((known[0], known[1], value.strip()))
        if check_count and len(fields) > max_headers:
            raise SipParseError("Too many headers")
    for index, extras in folded.items():
        key, name, value = fields[index]
        fields[index] = (key, name, " ".join([value, *extras] if value else extras))
    return Headers._trusted(fields)


def _cut_body(
    headers: Headers, body: bytes, limits: Limits
) -> tuple[bytes, tuple[str, int] | None]:
    """Apply Content-Length; returns the body and a deferred (reason, status) error."""
    values = headers.get_fields("Content-Length")
    if not values:
        if len(body) > limits.max_body:
            return b"", ("Body too large", 513)
        return body, None
    text = values[0]
    if any(value != text for value in values) or not (
        text.isascii() and text.isdigit() and len(text) <= 10
    ):
        return b"", ("Bad Content-Length", 400)
    length = int(text)
    if length > limits.max_body:
        return b"", ("Body too large", 513)
    if length > len(body):
        return b"", ("Content-Length mismatch", 400)
    return body[:length], None


_CORE = (("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))


def _check_core(message: Message) -> None:
    """Via, From, To, Call-ID and CSeq: present, single (but Via) and well formed."""
    keys = [field[0] for field in message.headers._fields]
    for slot, (key, name) in enumerate(_CORE):
        count = keys.count(key)
        if count == 0:
            raise SipParseError(f"Missing {name}")
        if count > 1 and slot:
            raise SipParseError(f"Duplicate {name}")
    # Each property parses, caches for later callers, or raises "Bad <header>".
    message.top_via  # noqa: B018
    if not plain_name_addr(message.headers._first_values()["from"]):
        message.from_addr  # noqa: B018
    message.to_addr  # noqa: B018
    if len(message.call_id.split()) != 1:
        raise SipParseError("Bad Call-ID")
    message.cseq  # noqa: B018


def _check_request(
    request: Request, line_problem: str | None, body_error: tuple[str, int] | None
) -> None:
    """Drop (no ``request`` on the error) only what the sender could not match an answer to."""
    via_fields = request.headers.get_fields("Via")
    if not via_fields:
        raise SipParseError("Missing Via")
    if line_problem == _FOREIGN_VERSION:
        # Before the Via check: a SIP/7.0 request carries SIP/7.0 Vias (RFC 4475 badvers).
        raise SipParseError(line_problem, request, 505)
    if len(via_fields) > 1 or "," in via_fields[0]:
        _check_all_vias(request, via_fields)
    request.top_via  # noqa: B018  (raises "Bad Via": drop)
    try:
        _check_core(request)
    except SipParseError as exc:
        raise SipParseError(exc.reason, request) from None
    if line_problem is not None:
        raise SipParseError(line_problem, request)
    if request.cseq[1] != request.method:
        raise SipParseError("CSeq method mismatch", request)
    try:
        request.max_forwards  # noqa: B018
    except SipParseError as exc:
        raise SipParseError(exc.reason, request) from None
    if body_error is not None:
        raise SipParseError(body_error[0], request, body_error[1])


def _check_all_vias(request: Request, fields: list[str]) -> None:
    """Every Via value, not just the top one (RFC 4475 badinv01: junk after a good top Via).

    The usual shapes are vetted by one C-level regex without building Via objects (a proxied
    request carries several); anything else goes through the full parse, which decides.
    """
    if _all_plain_vias(fields):
        return
    try:
        vias = request.vias
    except SipParseError:
        request.top_via  # noqa: B018  (a bad top Via is dropped, anything below it answered)
        raise SipParseError("Bad Via", request) from None
    first = fields[0]
    if '"' not in first and "<" not in first and first.partition(",")[0].strip():
        # Both views read the same text: spare the top Via a second parse.
        request._cache["Via"] = (first, vias[0])


def _all_plain_vias(fields: list[str]) -> bool:
    count = 0
    for field in fields:
        if '"' in field or "<" in field:
            return False
        for value in field.split(","):
            value = value.strip()
            if value:
                if not _PLAIN_VIA_RE.fullmatch(value):
                    return False
                count += 1
    return count <= MAX_LIST_VALUES
