"""The REGISTER fast path builds exactly the request the general parser builds, or declines.

``parse_plain_register`` may return None for anything; what it returns must equal, header
for header and view for view, what ``_parse_general`` makes of the same bytes, and it must
never accept what the general parser refuses (drops, or answers 400/505/513).  Vectors
first, then hypothesis mutations of the REGISTERs SIPp and phones send, then a time bound
on large inputs (the pattern must stay linear).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypbx.sip.errors import SipParseError
from pypbx.sip.fast_register import parse_plain_register
from pypbx.sip.limits import DEFAULT_LIMITS, Limits
from pypbx.sip.model import Request
from pypbx.sip.parser import _parse_general, parse_message

SIPP = (
    b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:61999;branch=z9hG4bK-12345-1-bench;rport\r\n"
    b"From: <sip:10001@127.0.0.1:5060>;tag=4242SIPpReg12345\r\n"
    b"To: <sip:10001@127.0.0.1:5060>\r\n"
    b"Call-ID: 12345-4242@127.0.0.1\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Contact: <sip:10001@127.0.0.1:61999;transport=UDP>\r\n"
    b"Expires: 3600\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: SIPp\r\n"
    b"Content-Length: 0\r\n\r\n"
)
AUTHORIZATION = (
    b'Authorization: Digest username="10001",realm="pypbx",cnonce="00003039",nc=00000001,'
    b'qop=auth,uri="sip:127.0.0.1:5060",nonce="AAABjABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm",'
    b'response="0123456789abcdef0123456789abcdef",algorithm=MD5,'
    b'opaque="0123456789abcdef0123456789abcdef"\r\n'
)
SIPP_AUTH = SIPP.replace(b"Expires:", AUTHORIZATION + b"Expires:")
PHONE = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;rport;branch=z9hG4bKPj3f9c\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@pbx.example.com>;tag=Zx9.aB\r\n'
    b"To: <sip:alice@pbx.example.com>\r\n"
    b"Call-ID: 5c2e9e1c-3f4a@192.0.2.10\r\n"
    b"CSeq: 4711 REGISTER\r\n"
    b"User-Agent: Linphone/5.2\r\n"
    b'Contact: <sip:alice@192.0.2.10:5062;ob>;+sip.instance="<urn:uuid:1-2>";expires=600\r\n'
    b"Supported: outbound, path\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER\r\n"
    b"Content-Length:  0\r\n\r\n"
)
COMPACT = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP host.example.com;branch=z9hG4bK77\r\n"
    b"f: <sip:bob@example.com>;tag=1\r\nt: sip:bob@example.com\r\ni: abc\r\n"
    b"CSEQ: 2 REGISTER\r\nm: *\r\nX-Custom: yes\r\nEXPIRES: 0\r\nl: 0\r\n\r\n"
)
PHONE_PLAIN = PHONE.replace(b"Content-Length:  0", b"Content-Length: 0")
SIPP_HIGH_PORT = SIPP_AUTH.replace(b"127.0.0.1:5060", b"127.0.0.1:39621")
SEEDS = [SIPP, SIPP_AUTH, SIPP_HIGH_PORT, PHONE_PLAIN, COMPACT]


def outcome(parse: object, data: bytes) -> object:
    try:
        return parse(data, DEFAULT_LIMITS)  # type: ignore[operator]
    except SipParseError as exc:
        return exc


def views(request: Request) -> list[object]:
    """Every view a caller may read, each as its value or its error."""
    out: list[object] = []
    for name in (
        "top_via", "vias", "from_addr", "to_addr", "call_id", "cseq", "contacts",
        "has_wildcard_contact", "max_forwards", "expires", "routes", "content_type",
    ):  # fmt: skip
        try:
            out.append(getattr(request, name))
        except SipParseError as exc:
            out.append(("error", exc.reason))
    return out


def check(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | None:
    """The fast path's answer, after checking it against the general parser's."""
    start = time.perf_counter()
    fast = parse_plain_register(data, limits)
    assert time.perf_counter() - start < 0.5, "the fast path went super-linear"
    if fast is None:
        return None
    general = _parse_general(data, limits)  # must not raise: the fast path accepted
    assert isinstance(general, Request)
    assert fast == general
    assert fast.headers._fields == general.headers._fields
    assert fast.headers.items() == general.headers.items()
    assert views(fast) == views(general)
    assert fast.serialize() == general.serialize()
    return fast


@pytest.mark.parametrize("data", SEEDS)
def test_the_usual_registers_take_the_fast_path(data: bytes) -> None:
    assert check(data) is not None
    assert parse_message(data) == _parse_general(data, DEFAULT_LIMITS)


def test_the_fast_path_fills_the_views_the_general_parser_fills() -> None:
    request = parse_plain_register(SIPP, DEFAULT_LIMITS)
    assert request is not None
    assert set(request._cache) == {"Via", "To", "CSeq"}  # From is vouched for by its shape
    assert request.top_via.branch == "z9hG4bK-12345-1-bench"
    assert "Content-Length" not in request.headers
    assert request.headers.get("Expires") == "3600"


DECLINED = [
    PHONE,  # two spaces after "Content-Length:": the general way strips them
    SIPP.replace(b"Content-Length: 0", b"Content-Length: 4") + b"abcd",
    SIPP + b"x",  # bytes after the blank line
    b"\r\n" + SIPP,  # leading CRLF
    SIPP.replace(b"\r\n", b"\n"),
    SIPP.replace(b"SIP/2.0\r\n", b"SIP/2.1\r\n", 1),
    SIPP.replace(b"REGISTER sip:", b"REGISTER  sip:"),
    SIPP.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE"),
    SIPP.replace(b"CSeq: 1 REGISTER", b"CSeq: 99999999999 REGISTER"),
    SIPP.replace(b"To: <sip:10001@127.0.0.1:5060>\r\n", b""),
    SIPP.replace(b"To: <sip:10001@127.0.0.1:5060>", b"To: <sip:10001@127.0.0.1:5060"),
    SIPP.replace(b"Call-ID: ", b"Call-ID: a b"),
    SIPP.replace(b"CSeq:", b"From: <sip:x@y>\r\nCSeq:"),
    SIPP.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP 10.0.0.1, SIP/2.0/UDP"),
    SIPP.replace(b"Via: SIP/2.0/UDP 127.0.0.1:61999", b"Via: SIP/2.0/UDP 127.0.0.1:99999"),
    SIPP.replace(b"Via: ", b"Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: "),
    SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"),
    SIPP.replace(b"User-Agent: SIPp", b"User-Agent: SIPp \xc3\xa9"),
    SIPP.replace(b"User-Agent: SIPp", b"User-Agent: SIPp\x07"),
    SIPP.replace(b"User-Agent: SIPp", b"User-Agent: SIPp\r\n folded"),
    SIPP.replace(b"User-Agent: SIPp", b"User-Agent : SIPp"),
    SIPP.replace(b"User-Agent: SIPp", b"User-Agent:"),
    SIPP.replace(b"REGISTER sip:127.0.0.1:5060", b"REGISTER sip:127.0.0.1:99999"),
    SIPP.replace(b"From: <sip:10001@", b'From: "x <sip:10001@'),
]


@pytest.mark.parametrize("data", DECLINED)
def test_anything_unusual_is_left_to_the_general_parser(data: bytes) -> None:
    assert check(data) is None


def test_bounds_are_the_general_parsers() -> None:
    assert check(SIPP, Limits(max_headers=5)) is None
    assert check(SIPP, Limits(max_line=100)) is None
    assert check(SIPP, Limits(max_message=100)) is None
    with pytest.raises(SipParseError, match="Too many headers"):
        parse_message(SIPP, Limits(max_headers=5))


def test_a_refused_register_gets_the_general_answer() -> None:
    bad = SIPP.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE")
    with pytest.raises(SipParseError, match="CSeq method mismatch") as caught:
        parse_message(bad)
    assert caught.value.request is not None and caught.value.status == 400


# -- mutations -------------------------------------------------------------------------------

PIECES = [
    b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b": ", b";", b",", b'"', b"<", b">", b"@", b"=",
    b"\x00", b"\x7f", b"\xff", b"\xc3\xa9", b"Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n",
    b"From: <sip:a@b>\r\n", b"To: sip:a@b\r\n", b"Content-Length: 0\r\n", b"l: 1\r\n",
    b"CSeq: 1 REGISTER\r\n", b"Max-Forwards: 1\r\n", b"Contact: *\r\n", b"v: x\r\n",
    b"SIP/2.0", b"REGISTER", b"99999", b"0",
]  # fmt: skip

Edit = tuple[int, int, int]


def mutate(seed: bytes, edits: list[Edit]) -> bytes:
    out = bytearray(seed)
    for kind, position, choice in edits:
        at = position % (len(out) + 1)
        if kind == 0:  # insert a piece
            out[at:at] = PIECES[choice % len(PIECES)]
        elif kind == 1 and out:  # replace a byte
            out[at % len(out)] = PIECES[choice % len(PIECES)][0]
        elif kind == 2:  # delete a run
            del out[at : at + choice % 12 + 1]
        elif kind == 3:  # duplicate a line
            lines = bytes(out).split(b"\r\n")
            lines.insert(position % len(lines), lines[choice % len(lines)])
            out = bytearray(b"\r\n".join(lines))
        elif kind == 4:  # drop a line
            lines = bytes(out).split(b"\r\n")
            del lines[choice % len(lines)]
            out = bytearray(b"\r\n".join(lines))
        elif kind == 5:  # change the case of a byte
            if out:
                out[at % len(out) : at % len(out) + 1] = bytes(out[at % len(out) :][:1]).swapcase()
        else:  # a long run
            unit = PIECES[choice % len(PIECES)]
            out[at:at] = unit * (9000 // len(unit) if choice % 3 == 0 else choice % 40)
    return bytes(out)


MUTATED = st.builds(
    mutate,
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2**16), st.integers(0, 255)), max_size=4),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATED)
def test_mutated_registers_agree_with_the_general_parser(data: bytes) -> None:
    fast = check(data)
    general = outcome(_parse_general, data)
    if fast is None:
        return
    assert not isinstance(general, SipParseError)


@pytest.mark.parametrize(
    "unit", [b"a", b" ", b"a ", b"\r", b"X: y\r\n", b"x" * 50 + b" ", b"\r\n", b":"]
)
@pytest.mark.parametrize("where", [b"User-Agent: SIPp", b"Content-Length: 0\r\n", b"REGISTER "])
def test_large_inputs_take_time_in_proportion(
    unit: bytes, where: bytes, best_of: Callable[[Callable[[], object]], float]
) -> None:
    """Linear, not quadratic: eight times the input takes about eight times as long, not
    sixty-four (best of several runs, so machine load does not decide it)."""
    for limits in (DEFAULT_LIMITS, Limits(max_line=70000, max_headers=100000)):
        small, large = (
            best_of(partial(parse_plain_register, data, limits))
            for data in (
                SIPP.replace(where, where + unit * (size // len(unit)), 1) for size in (8000, 64000)
            )
        )
        assert large < 25 * small + 0.001, (unit, where, small, large)


@pytest.mark.parametrize("port", ["5060", "61999", "65535"])
def test_a_from_with_a_high_port_is_vouched_for_below_65536(port: str) -> None:
    data = SIPP.replace(b"From: <sip:10001@127.0.0.1:5060>", f"From: <sip:a@h:{port}>".encode())
    request = parse_plain_register(data, DEFAULT_LIMITS)
    assert request is not None and "From" not in request._cache
    assert check(data) is not None
    assert request.from_addr.uri.port == int(port)


def test_a_from_with_a_port_above_65535_gets_the_general_400() -> None:
    data = SIPP.replace(b"From: <sip:10001@127.0.0.1:5060>", b"From: <sip:a@h:65536>")
    assert check(data) is None
    with pytest.raises(SipParseError, match="Bad From") as caught:
        parse_message(data)
    assert caught.value.request is not None and caught.value.status == 400
