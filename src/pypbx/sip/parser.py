"""Bytes to ``Request``/``Response`` (RFC 3261 §7, §18.3), bounded and strict where it matters.

Why the split between drop and answer: a response can only be built when the request line,
top Via, From, To, Call-ID and CSeq are readable; anything less (and every bad response) is
dropped.  Errors found after those checks (CSeq method mismatch, Content-Length, version,
Request-URI, Max-Forwards) carry the request so the caller can answer 400/505/513.

The hot path is a handful of C-level passes (regex search for the blank line, decode, split)
plus one short Python loop over header lines; header values are not parsed here except for
the five mandatory ones that transaction matching needs anyway.
"""

from __future__ import annotations

import re

from pypbx.sip._lex import TOKEN_RE
from pypbx.sip.errors import SipParseError
from pypbx.sip.headers import KNOWN_NAMES, Headers
from pypbx.sip.limits import DEFAULT_LIMITS, Limits
from pypbx.sip.model import Message, Request, Response
from pypbx.sip.uri import SipURI

_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
# Control characters other than HT and LF; CR is checked after CRLF was normalised to LF.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one whole message (a UDP datagram, or a frame from ``StreamFramer``).

    Leading CRLFs are skipped; CRLF and bare LF line ends are accepted; a missing
    Content-Length means the body is the rest of the datagram.  Content-Length is consumed
    (removed from ``headers``) because ``len(body)`` is what ``serialize`` writes.  Raises
    ``SipParseError`` and nothing else.
    """
    if len(data) > limits.max_message:
        raise SipParseError("Message too large")
    data = bytes(data).lstrip(b"\r\n")  # bytes() is free for bytes, copies a bytearray
    if not data:
        raise SipParseError("Empty message")
    blank = _BLANK_LINE_RE.search(data)
    if blank is None:
        head_bytes, body = data, b""
    else:
        head_bytes, body = data[: blank.start()], data[blank.end() :]
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        # Old phones send Latin-1 display names; every byte decodes, control bytes are
        # caught below, and the value is re-encoded as UTF-8 on output.
        head = head_bytes.decode("latin-1")
    head = head.replace("\r\n", "\n")
    if _CONTROL_RE.search(head):
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
    _check_core(message)
    if isinstance(message, Request):
        _check_request(message, line_problem, body_error)
    elif body_error is not None:
        raise SipParseError(body_error[0])
    return message


def _parse_start_line(line: str) -> tuple[Request | Response, str | None]:
    """The message with empty headers, plus a deferred error for requests (see module doc)."""
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != "SIP/2.0":
            raise SipParseError("Unsupported SIP version")
        if not (len(code) == 3 and code.isascii() and code.isdigit() and code[0] in "123456"):
            raise SipParseError("Bad status line")
        return Response(int(code), reason.strip(), Headers._trusted([])), None
    parts = line.split()
    if len(parts) != 3 or not TOKEN_RE.fullmatch(parts[0]) or not _VERSION_RE.fullmatch(parts[2]):
        raise SipParseError("Bad request line")
    method, uri_text, version = parts
    problem = None if version.upper() == "SIP/2.0" else "Unsupported SIP version"
    try:
        uri = SipURI.parse(uri_text)
    except SipParseError:
        # Keep the text so a 400 can still be built and logged.
        scheme, _, rest = uri_text.partition(":")
        uri = SipURI(scheme=scheme.lower(), opaque=rest)
        problem = problem or "Bad Request-URI"
    return Request(method, uri, Headers._trusted([])), problem


def _parse_header_lines(lines: list[str], limits: Limits) -> Headers:
    fields: list[tuple[str, str, str]] = []
    max_line = limits.max_line
    max_headers = limits.max_headers
    for line in lines[1:]:
        if len(line) > max_line:
            raise SipParseError("Header line too long")
        if line[:1] in (" ", "\t"):
            # Folding: a continuation line joins the previous value with one space (§7.3.1).
            if not fields:
                raise SipParseError("Malformed header line")
            key, name, value = fields[-1]
            extra = line.strip()
            fields[-1] = (key, name, f"{value} {extra}" if value and extra else value + extra)
            continue
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError("Malformed header line")
        name = line[:colon].rstrip()
        lower = name.lower()
        known = KNOWN_NAMES.get(lower)
        if known is None:
            if not TOKEN_RE.fullmatch(name):
                raise SipParseError("Malformed header line")
            known = (lower, name)
        fields.append((known[0], known[1], line[colon + 1 :].strip()))
        if len(fields) > max_headers:
            raise SipParseError("Too many headers")
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


_CORE_SLOTS = {"via": 0, "from": 1, "to": 2, "call-id": 3, "cseq": 4}
_CORE_NAMES = ("Via", "From", "To", "Call-ID", "CSeq")


def _check_core(message: Message) -> None:
    """The headers without which no response can be routed or matched: failure => drop."""
    counts = [0, 0, 0, 0, 0]
    for key, _, _ in message.headers._fields:
        slot = _CORE_SLOTS.get(key)
        if slot is not None:
            counts[slot] += 1
    for slot, name in enumerate(_CORE_NAMES):
        if counts[slot] == 0:
            raise SipParseError(f"Missing {name}")
        if counts[slot] > 1 and slot:
            raise SipParseError(f"Duplicate {name}")
    # Each property parses, caches for later callers, or raises "Bad <header>".
    message.top_via  # noqa: B018
    message.from_addr  # noqa: B018
    message.to_addr  # noqa: B018
    if len(message.call_id.split()) != 1:
        raise SipParseError("Bad Call-ID")
    message.cseq  # noqa: B018


def _check_request(
    request: Request, line_problem: str | None, body_error: tuple[str, int] | None
) -> None:
    """Errors a 4xx/5xx can be sent for: each carries the request."""
    if line_problem is not None:
        status = 505 if line_problem == "Unsupported SIP version" else 400
        raise SipParseError(line_problem, request, status)
    if request.cseq[1] != request.method:
        raise SipParseError("CSeq method mismatch", request)
    try:
        request.max_forwards  # noqa: B018
    except SipParseError as exc:
        raise SipParseError(exc.reason, request) from None
    if body_error is not None:
        raise SipParseError(body_error[0], request, body_error[1])
