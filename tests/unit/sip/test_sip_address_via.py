"""Address (name-addr/addr-spec) and Via value vectors."""

from __future__ import annotations

import pytest

from pypbx.sip.message import Address, SipParseError, Via


def test_name_addr_with_quoted_display_name() -> None:
    addr = Address.parse('"Alice \\"The Boss\\", Esq." <sip:alice@atlanta.com>;tag=88sja8x')
    assert addr.display_name == 'Alice "The Boss", Esq.'
    assert addr.uri.user == "alice"
    assert addr.tag == "88sja8x"
    assert str(addr) == '"Alice \\"The Boss\\", Esq." <sip:alice@atlanta.com>;tag=88sja8x'
    assert Address.parse(str(addr)) == addr


def test_name_addr_with_token_display_name() -> None:
    addr = Address.parse("Bob   Smith <sip:bob@biloxi.com>")
    assert addr.display_name == "Bob Smith"
    assert str(addr) == '"Bob Smith" <sip:bob@biloxi.com>'


def test_escaped_backslash_before_closing_quote() -> None:
    addr = Address.parse('"C:\\\\" <sip:c@d>')
    assert addr.display_name == "C:\\"
    assert Address.parse(str(addr)) == addr


def test_addr_spec_params_belong_to_the_header() -> None:
    addr = Address.parse("sip:alice@atlanta.com;tag=1234;expires=60")
    assert addr.uri.params == {}
    assert addr.params == {"tag": "1234", "expires": "60"}
    assert str(addr) == "<sip:alice@atlanta.com>;tag=1234;expires=60"


def test_name_addr_keeps_uri_params_inside() -> None:
    addr = Address.parse("<sip:p1.example.com;lr;transport=tcp>;x=y")
    assert addr.uri.params == {"lr": None, "transport": "tcp"}
    assert addr.params == {"x": "y"}
    assert addr.display_name is None


def test_quoted_param_values_are_kept_verbatim() -> None:
    text = (
        '<sip:a@10.0.0.1:5060;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
        ";reg-id=1;expires=3600"
    )
    addr = Address.parse(text)
    assert addr.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    assert addr.params["reg-id"] == "1"
    assert str(addr) == text


def test_ipv6_and_no_space_before_angle() -> None:
    addr = Address.parse('"x"<sip:[2001:db8::1]:5062>')
    assert addr.uri.host == "2001:db8::1"
    assert addr.uri.port == 5062
    assert str(addr) == '"x" <sip:[2001:db8::1]:5062>'


def test_with_tag() -> None:
    addr = Address.parse("<sip:b@c>")
    tagged = addr.with_tag("t1")
    assert addr.tag is None
    assert tagged.tag == "t1"
    assert tagged.with_tag(None).tag is None
    assert str(tagged) == "<sip:b@c>;tag=t1"


def test_display_name_cannot_inject_lines() -> None:
    addr = Address(Address.parse("<sip:a@b>").uri, "evil\r\nVia: x")
    assert "\r" not in str(addr)
    assert "\n" not in str(addr)


def test_parse_list_respects_quotes_and_brackets() -> None:
    text = '"Doe, John" <sip:j@a;x=1,2>;q=0.7, sip:k@b , <sip:l@c>;q="0,1"'
    addrs = Address.parse_list(text)
    assert [a.display_name for a in addrs] == ["Doe, John", None, None]
    assert [str(a.uri) for a in addrs] == ["sip:j@a;x=1,2", "sip:k@b", "sip:l@c"]
    assert addrs[2].params == {"q": '"0,1"'}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "*",
        '"unterminated <sip:a@b>',
        '"Alice" sip:a@b',
        "<sip:a@b",
        "<sip:a@b> tag=1",
        "<sip:a@b>;tag=1, <sip:c@d>",
        "<sip:a@b>;=1",
        "<not a uri>",
        'Al"ice <sip:a@b>',
        "sip:a@b;tag=x y",
    ],
)
def test_malformed_addresses(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        Address.parse(text, "From")
    assert info.value.reason == "Bad From"


def test_via_vector() -> None:
    via = Via.parse(
        "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5067"
    )
    assert (via.transport, via.host, via.port) == ("UDP", "pc33.atlanta.com", 5066)
    assert via.branch == "z9hG4bK776asdhds"
    assert via.received == "192.0.2.1"
    assert via.rport == 5067
    assert via.has_rport
    assert (
        str(via)
        == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5067"
    )


def test_via_with_lws_everywhere() -> None:
    via = Via.parse("SIP  /  2.0  /  tcp   [2001:db8::9] : 5070 ;  branch = z9hG4bKx ; rport")
    assert (via.transport, via.host, via.port) == ("TCP", "2001:db8::9", 5070)
    assert via.params == {"branch": "z9hG4bKx", "rport": None}
    assert via.has_rport
    assert via.rport is None
    assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKx;rport"


def test_via_new() -> None:
    via = Via.new("tcp", "10.0.0.1", 5060)
    assert via.transport == "TCP"
    assert via.branch is not None and via.branch.startswith("z9hG4bK")
    assert len(via.branch) > len("z9hG4bK") + 16
    assert via.has_rport and via.rport is None
    assert Via.new("udp", "h", None).branch != via.branch
    assert Via.parse(str(via)) == via


def test_via_copy_is_independent() -> None:
    via = Via.parse("SIP/2.0/UDP h;branch=z9hG4bK1")
    other = via.copy()
    other.params["received"] = "1.2.3.4"
    assert via.received is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host",
        "SIP/2.0 host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host name",
        "SIP/2.0/UDP host;=x",
        "SIP/2.0/UDP [::1;branch=z",
        "HTTP/1.1/TCP host",
    ],
)
def test_malformed_via(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        Via.parse(text)
    assert info.value.reason == "Bad Via"
