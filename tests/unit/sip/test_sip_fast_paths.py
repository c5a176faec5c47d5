"""The C-level fast paths of the header parsers give exactly what the general parsers give.

URI, Via, header parameters and Digest auth-params each try one regex for the usual shape
before the general parse; these tests feed both the same text (vectors, then hypothesis
strings from an alphabet of the characters that matter) and require the same result or the
same error.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.sip._lex import _parse_params_general as general_params
from pypbx.sip._lex import parse_params
from pypbx.sip.address import Address, plain_name_addr
from pypbx.sip.digest import DigestError, _parse_params
from pypbx.sip.digest import _parse_params_general as general_auth_params
from pypbx.sip.errors import SipParseError
from pypbx.sip.parser import parse_message
from pypbx.sip.uri import SipURI
from pypbx.sip.via import Via

ALPHABET = "sSiIpP:@;=.-_!~*'()&+$,%/?<>\"\\ \tAz09[]\x00\x7fé"


def outcome(parse: Callable[[str], object], text: str) -> object:
    try:
        return parse(text)
    except (SipParseError, DigestError) as exc:
        return ("error", type(exc).__name__, str(exc))


URIS = [
    "sip:10001@127.0.0.1:5060",
    "sip:10001@127.0.0.1:61999;transport=UDP",
    "SIPS:Alice@Example.COM;LR;maddr=10.0.0.1",
    "sip:host",
    "sip:host:65535",
    "sip:host:65536",
    "sip:host:99999",
    "sip:host;",
    "sip:host;;lr",
    "sip:host;=x",
    "sip:a:pw@host",
    "sip:a;b@host",
    "sip:host?subject=x",
    "sip:[::1]:5060",
    "sip:a@host;x=y=z;flag",
    "sip:a@",
    "sip:@host",
    "sip:a b@host",
    "tel:+123",
]


@pytest.mark.parametrize("text", URIS)
def test_uri_fast_path_matches_general_parse(text: str) -> None:
    assert outcome(SipURI.parse, text) == outcome(SipURI._parse_general, text)


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=40))
def test_uri_fast_path_matches_general_parse_fuzzed(tail: str) -> None:
    for text in (f"sip:{tail}", f"sip:a@h{tail}", tail):
        assert outcome(SipURI.parse, text) == outcome(SipURI._parse_general, text.strip())


VIAS = [
    "SIP/2.0/UDP 127.0.0.1:61999;branch=z9hG4bK-1;rport",
    "SIP/2.0/UDP 127.0.0.1:61999;branch=z9hG4bK-1;rport=5;received=10.0.0.1",
    "SIP/2.0/TCP host.example.com;BRANCH=Z9hG4bKx",
    "SIP/2.0/udp host:5060",
    "sip/2.0/UDP host:5060",
    "SIP/2.0/UDP host:70000;branch=x",
    "SIP/2.0/UDP host;",
    "SIP/2.0/UDP host;;branch=x",
    "SIP/2.0/UDP host;branch=",
    "SIP/2.0/UDP host;branch=a=b",
    "SIP / 2.0 / UDP host : 5060 ; branch = x",
    "SIP/2.0/UDP [::1]:5060;branch=x",
    'SIP/2.0/UDP host;x="a;b"',
    "SIP/2.0/UDP host;branch=x;",
]


@pytest.mark.parametrize("text", VIAS)
def test_via_fast_path_matches_general_parse(text: str) -> None:
    assert outcome(Via.parse, text) == outcome(Via._parse_general, text)


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=40))
def test_via_fast_path_matches_general_parse_fuzzed(tail: str) -> None:
    for text in (f"SIP/2.0/UDP h{tail}", f"SIP/2.0/UDP 1.2.3.4:5060;{tail}"):
        assert outcome(Via.parse, text) == outcome(Via._parse_general, text)


PARAMS = [
    ";tag=abc",
    ";tag=4242SIPpReg7;expires=3600",
    ";LR",
    ";a=",
    ";a==b",
    ";a=b;",
    ";;a",
    ";a;a=1",
    ';a="x;y"',
    "; a = b",
    ";a=<b>",
    ";=b",
]


@pytest.mark.parametrize("text", PARAMS)
def test_params_fast_path_matches_general_parse(text: str) -> None:
    def general(value: str) -> dict[str, str | None]:
        return general_params(value, "From")

    assert outcome(lambda v: parse_params(v, "From"), text) == outcome(general, text)


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=40))
def test_params_fast_path_matches_general_parse_fuzzed(tail: str) -> None:
    text = (";" + tail).strip()

    def general(value: str) -> dict[str, str | None]:
        return general_params(value, "To")

    assert outcome(lambda v: parse_params(v, "To"), text) == outcome(general, text)


AUTH_PARAMS = [
    'username="10001",realm="pypbx",nc=00000001,qop=auth,uri="sip:a@b",algorithm=MD5',
    ' username = "a" , realm="b",, ',
    'a="x\\"y"',
    'a="unterminated',
    'a="trailing\\',
    "a=b c=d",
    'a="x"b=1',
    "a=1,a=2",
    "A=1,a=2",
    "a=",
    "=1",
    'a=b"c',
    ",".join(f"p{i}=1" for i in range(40)),
    "",
    " , ",
]


def _auth_params(text: str) -> dict[str, str]:
    return _parse_params(text, 0)


@pytest.mark.parametrize("text", AUTH_PARAMS)
def test_digest_split_matches_general_parse(text: str) -> None:
    assert outcome(_auth_params, text) == outcome(lambda v: general_auth_params(v, 0), text)


@settings(max_examples=400, deadline=None)
@given(st.text('ab=",\\ \tx', max_size=30))
def test_digest_split_matches_general_parse_fuzzed(text: str) -> None:
    assert outcome(_auth_params, text) == outcome(lambda v: general_auth_params(v, 0), text)


# -- From values the parser vouches for without building them ------------------------------------

FROMS = [
    "<sip:10001@127.0.0.1:5060>;tag=4242SIPpReg7",
    "<sip:10001@127.0.0.1:5060>",
    "<SIPS:Alice@Example.COM;LR;maddr=10.0.0.1>;tag=a;x",
    "<sip:host:9999>;tag=1",
    "<sip:host:65535>;tag=1",
    "<sip:host:65536>;tag=1",
    "<sip:host:99999>",
    "<sip:a@host;x=y=z;flag>;tag=",
    '<sip:a@host>;tag="quoted"',
    "<sip:a@host>;;tag=1",
    "<sip:a@host> ;tag=1",
    "<sip:a@host>;tag=1;" + ";".join(f"p{i}" for i in range(300)),
    "Alice <sip:a@host>;tag=1",
    '"Alice" <sip:a@host>',
    "sip:a@host;tag=1",
    "<sip:a@host",
    "<sip:a@>;tag=1",
    "<tel:+123>;tag=1",
    "<sip:a b@host>",
    "<sip:a@host?subject=x>",
]


def _parsed(text: str) -> object:
    return outcome(lambda value: Address.parse(value, "From"), text)


@pytest.mark.parametrize("text", FROMS)
def test_a_from_vouched_for_always_parses(text: str) -> None:
    if plain_name_addr(text):
        assert isinstance(_parsed(text), Address)


def test_the_usual_from_is_vouched_for() -> None:
    assert plain_name_addr(FROMS[0]) and plain_name_addr(FROMS[2])
    assert not plain_name_addr(FROMS[5]) and not plain_name_addr(FROMS[11])


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=40).map(lambda tail: "<sip:" + tail))
def test_a_from_vouched_for_always_parses_fuzzed(text: str) -> None:
    if plain_name_addr(text):
        assert isinstance(_parsed(text), Address)


def test_a_bad_from_is_still_answered_400() -> None:
    text = (
        "REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK-1\r\n"
        "From: <sip:a@host:99999>;tag=1\r\nTo: <sip:a@pbx.test>\r\nCall-ID: c1\r\n"
        "CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    with pytest.raises(SipParseError, match=r"^Bad From$") as caught:
        parse_message(text.encode())
    assert caught.value.request is not None  # answerable: a 400, not a drop
