"""The parse memo changes nothing but the cost: with or without it, the same requests.

One memo is shared by every example, as the stack shares one across all it receives, so
a value remembered from one request that leaked into another would show as a difference.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypbx.sip.errors import SipParseError
from pypbx.sip.fast_register import parse_plain_register
from pypbx.sip.limits import DEFAULT_LIMITS
from pypbx.sip.model import Request
from pypbx.sip.parse_memo import ParseMemo
from pypbx.sip.parser import _parse_general, parse_message
from pypbx.sip.via import Via

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
PHONE = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;rport;branch=z9hG4bKPj3f9c\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@pbx.example.com>;tag=Zx9.aB\r\n'
    b'To: "Alice" <sip:alice@pbx.example.com;user=phone>;x=y\r\n'
    b"Call-ID: 5c2e9e1c-3f4a@192.0.2.10\r\n"
    b"CSeq: 4711 REGISTER\r\n"
    b'Contact: <sip:alice@192.0.2.10:5062;ob>;+sip.instance="<urn:uuid:1-2>";expires=600\r\n'
    b"Content-Length: 0\r\n\r\n"
)
SEEDS = [SIPP, PHONE]
SHARED = ParseMemo(size=50)  # small: the examples also cross its bound and start over


def views(request: Request) -> list[object]:
    out: list[object] = []
    for name in ("top_via", "from_addr", "to_addr", "call_id", "cseq", "contacts", "expires"):
        try:
            out.append(getattr(request, name))
        except SipParseError as exc:
            out.append(("error", exc.reason))
    return out


def same_either_way(data: bytes, memo: ParseMemo) -> Request | None:
    with_memo = parse_plain_register(data, DEFAULT_LIMITS, memo)
    without = parse_plain_register(data, DEFAULT_LIMITS)
    if with_memo is None or without is None:
        assert with_memo is None and without is None
        return None
    assert with_memo == without
    assert with_memo.uri == without.uri
    assert with_memo.headers._fields == without.headers._fields
    assert with_memo._cache == without._cache
    assert views(with_memo) == views(without)
    assert with_memo.serialize() == without.serialize()
    assert with_memo == _parse_general(data, DEFAULT_LIMITS)
    return with_memo


@pytest.mark.parametrize("data", SEEDS)
def test_the_usual_registers_parse_the_same_with_a_memo(data: bytes) -> None:
    memo = ParseMemo()
    first = same_either_way(data, memo)
    second = same_either_way(data, memo)
    assert first is not None and second is not None
    assert len(memo) == 4  # Request-URI, To, CSeq and the Via without its branch
    # the second request shares the first one's parsed values
    assert second.uri is first.uri and second.to_addr is first.to_addr
    assert parse_message(data, DEFAULT_LIMITS, memo) == parse_message(data)


def test_each_text_has_its_own_value() -> None:
    memo = ParseMemo()
    one = same_either_way(SIPP, memo)
    two = same_either_way(
        SIPP.replace(b"CSeq: 1 ", b"CSeq: 2 ").replace(b"To: <sip:10001@", b"To: <sip:10002@"),
        memo,
    )
    assert one is not None and two is not None
    assert (one.cseq, two.cseq) == ((1, "REGISTER"), (2, "REGISTER"))
    assert (one.to_addr.uri.user, two.to_addr.uri.user) == ("10001", "10002")


def test_a_failed_parse_is_not_remembered() -> None:
    memo = ParseMemo()
    for _ in range(2):
        with pytest.raises(SipParseError, match="Bad To"):
            memo.to("<sip:a@b")
        with pytest.raises(SipParseError, match="Bad CSeq"):
            memo.cseq("x REGISTER")
        with pytest.raises(SipParseError, match="Bad URI"):
            memo.uri("sip:a@b:99999")
    assert len(memo) == 0


def test_each_kind_is_forgotten_at_its_bound() -> None:
    memo = ParseMemo(size=2)
    for n in range(3):
        memo.to(f"<sip:{n}@h>")
    memo.cseq("1 REGISTER")
    assert len(memo) == 2  # the third To came after clearing two; one CSeq
    assert memo.to("<sip:2@h>").uri.user == "2"


PIECES = [b"\r\n", b" ", b";", b",", b'"', b"<", b">", b"@", b"=", b":", b"\xc3\xa9", b"0"]
Edit = tuple[int, int, int]


def mutate(seed: bytes, edits: list[Edit]) -> bytes:
    out = bytearray(seed)
    for kind, position, choice in edits:
        at = position % (len(out) + 1)
        if kind == 0:
            out[at:at] = PIECES[choice % len(PIECES)]
        elif kind == 1 and out:
            out[at % len(out)] = PIECES[choice % len(PIECES)][0]
        else:
            del out[at : at + choice % 6 + 1]
    return bytes(out)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.builds(
        mutate,
        st.sampled_from(SEEDS),
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 2**16), st.integers(0, 255)), max_size=3
        ),
    )
)
def test_mutated_registers_parse_the_same_with_a_shared_memo(data: bytes) -> None:
    same_either_way(data, SHARED)


# -- Vias: remembered without their branch --------------------------------------------------

VIAS = [
    "SIP/2.0/UDP 127.0.0.1:61999;branch=z9hG4bK-12345-1-bench;rport",
    "SIP/2.0/UDP 192.0.2.10:5062;rport;branch=z9hG4bKPj3f9c",
    "SIP/2.0/TCP host.example.com;branch=z9hG4bK77;received=192.0.2.1;rport=5060",
    "SIP/2.0/udp h;BRANCH=a;branch=b",  # the later spelling wins
    "SIP/2.0/UDP h;branch=b;BRANCH=a",
    "SIP/2.0/UDP h;branch=b;branch=c",
    "SIP / 2.0 / UDP h : 5060 ;branch=z9hG4bKx",  # LWS: the general parse
    'SIP/2.0/UDP h;x="q;branch=z9hG4bK.pypbx.memo";branch=y',  # quotes: parsed in full
    "SIP/2.0/UDP h;branch=z9hG4bK.pypbx.memo",
    "SIP/2.0/UDP h;branch=",
    "SIP/2.0/UDP h;branch=a b",
    "SIP/2.0/UDP h;branch=<x>",
    "SIP/2.0/UDP h:99999;branch=z9hG4bK1",  # a bad port: the same error either way
    "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1",
    "SIP/2.0/UDP h;branch=z9hG4bK1,SIP/2.0/UDP g",
]


def via_outcome(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except SipParseError as exc:
        return ("error", exc.reason)


@pytest.mark.parametrize("text", VIAS)
def test_a_remembered_via_is_the_parsed_one(text: str) -> None:
    memo = ParseMemo()
    for branch in ("", "z9hG4bK-other", "z9hG4bKPj.a_b~c"):
        varied = text.replace("branch=z9hG4bK", f"branch={branch or 'z9hG4bK'}", 1)
        for _ in range(2):  # a miss, then a hit
            assert via_outcome(memo.via, varied) == via_outcome(Via.parse, varied)


def test_a_via_hit_is_a_new_via_each_time() -> None:
    memo = ParseMemo()
    one = memo.via("SIP/2.0/UDP h;branch=z9hG4bK1;rport")
    two = memo.via("SIP/2.0/UDP h;branch=z9hG4bK2;rport")
    assert (one.branch, two.branch) == ("z9hG4bK1", "z9hG4bK2")
    assert one.params is not two.params
    assert list(two.params) == ["branch", "rport"]
    assert len(memo) == 1


VIA_PIECES = ["SIP/2.0/UDP ", "SIP/2.0/TCP ", "h", ":5060", ":", ";branch=", ";BRANCH=",
              "z9hG4bK", "-1", ";rport", ";rport=1", ";received=192.0.2.1", ";x", "=",
              '"', ";", " ", ",", "é", "[::1]", "99999"]  # fmt: skip
SHARED_VIAS = ParseMemo(size=100)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(VIA_PIECES), min_size=1, max_size=10))
def test_random_vias_parse_the_same_with_a_shared_memo(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert via_outcome(SHARED_VIAS.via, text) == via_outcome(Via.parse, text)
