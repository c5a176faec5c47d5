"""SipURI vectors: parse -> fields -> str() gives the input back (or its canonical form)."""

from __future__ import annotations

import pytest

from pypbx.sip.message import SipParseError, SipURI


@pytest.mark.parametrize(
    ("text", "scheme", "user", "password", "host", "port", "params", "headers"),
    [
        ("sip:alice@atlanta.com", "sip", "alice", None, "atlanta.com", None, {}, {}),
        (
            "sip:alice:secretword@atlanta.com;transport=tcp",
            "sip", "alice", "secretword", "atlanta.com", None, {"transport": "tcp"}, {},
        ),
        (
            "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sips", "alice", None, "atlanta.com", None, {},
            {"subject": "project%20x", "priority": "urgent"},
        ),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            "sip", "+1-212-555-1212", "1234", "gateway.com", None, {"user": "phone"}, {},
        ),
        ("sips:1212@gateway.com", "sips", "1212", None, "gateway.com", None, {}, {}),
        ("sip:alice@192.0.2.4", "sip", "alice", None, "192.0.2.4", None, {}, {}),
        ("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com", "sip", None, None,
         "atlanta.com", None, {"method": "REGISTER"}, {"to": "alice%40atlanta.com"}),
        ("sip:alice;day=tuesday@atlanta.com", "sip", "alice;day=tuesday", None, "atlanta.com",
         None, {}, {}),
        ("sip:bob@[2001:db8::10]:5070;lr", "sip", "bob", None, "2001:db8::10", 5070,
         {"lr": None}, {}),
        ("sip:[::1]", "sip", None, None, "::1", None, {}, {}),
        ("sip:proxy.example.com:5060;lr;maddr=10.0.0.1", "sip", None, None,
         "proxy.example.com", 5060, {"lr": None, "maddr": "10.0.0.1"}, {}),
        ("sip:%61lice@example.com", "sip", "%61lice", None, "example.com", None, {}, {}),
    ],
)  # fmt: skip
def test_parse_vectors(
    text: str,
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: dict[str, str | None],
    headers: dict[str, str],
) -> None:
    uri = SipURI.parse(text)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        scheme,
        user,
        password,
        host,
        port,
    )
    assert uri.params == params
    assert uri.headers == headers
    assert str(uri) == text
    assert SipURI.parse(str(uri)) == uri


def test_canonical_forms() -> None:
    uri = SipURI.parse("SIP:Alice@Example.COM;Transport=TCP")
    assert uri.scheme == "sip"
    assert uri.params == {"transport": "TCP"}  # names lowercased, values kept
    assert uri.transport == "tcp"
    assert str(uri) == "sip:Alice@Example.COM;transport=TCP"


def test_raw_at_sign_in_uri_header_does_not_end_userinfo() -> None:
    uri = SipURI.parse("sip:bob@b.example?Replaces=abc@a.example%3Bto-tag%3D1")
    assert uri.user == "bob"
    assert uri.host == "b.example"
    assert uri.headers == {"Replaces": "abc@a.example%3Bto-tag%3D1"}
    hostonly = SipURI.parse("sip:b.example?Replaces=abc@a.example")
    assert hostonly.user is None
    assert hostonly.host == "b.example"


def test_transport_defaults() -> None:
    assert SipURI.parse("sip:a@b").transport == "udp"
    assert SipURI.parse("sips:a@b").transport == "tls"
    assert SipURI.parse("sip:a@b;transport").transport == "udp"
    assert SipURI.parse("sip:a@b;transport=WS").transport == "ws"


def test_opaque_schemes() -> None:
    uri = SipURI.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert uri.scheme == "tel"
    assert uri.opaque == "+1-201-555-0123;phone-context=example.com"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    assert SipURI.parse("urn:service:sos").opaque == "service:sos"


def test_copy_is_independent() -> None:
    uri = SipURI.parse("sip:a@b;lr")
    other = uri.copy(port=5080)
    other.params["transport"] = "tcp"
    assert str(uri) == "sip:a@b;lr"
    assert str(other) == "sip:a@b:5080;lr;transport=tcp"


def test_construct_and_serialise_ipv6() -> None:
    assert str(SipURI(user="100", host="fe80::1", port=5060)) == "sip:100@[fe80::1]:5060"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "alice@atlanta.com",
        "sip:@atlanta.com",
        "sip:alice@",
        "sip:alice@atlanta.com:",
        "sip:alice@atlanta.com:99999",
        "sip:alice@atlanta.com:5o60",
        "sip:alice@[::1",
        "sip:alice@[::1]x",
        "sip:alice@[zz::1]",
        "sip:alice@atl anta.com",
        "sip:alice@<atlanta.com>",
        'sip:"alice"@atlanta.com',
        "sip:alice@atlanta.com;=x",
        "sip:alice@exa$mple.com",
        "1sip:alice@atlanta.com",
        "sip:alice@atlanta.com:\u0665\u0660",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipURI.parse(text)
    assert info.value.reason == "Bad URI"
    assert info.value.request is None
