"""The received/rport stamp on a request's top Via (§18.2.1, RFC 3581), with Via lists.

Only the top value changes; Vias below it, in fields of their own, are left exactly as
received (spacing and all), since proxies' Vias are echoed back byte for byte.
"""

from __future__ import annotations

from pypbx.sip.message import Request, parse_message
from pypbx.sip.transaction import TransactionLayer

NAT = ("203.0.113.7", 40123)


def invite(*via_fields: str) -> Request:
    vias = "".join(f"Via: {field}\r\n" for field in via_fields)
    data = (
        "INVITE sip:2000@example.com SIP/2.0\r\n"
        f"{vias}"
        "From: <sip:1000@example.com>;tag=a\r\n"
        "To: <sip:2000@example.com>\r\n"
        "Call-ID: stamp-1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def stamped(request: Request) -> list[str]:
    layer = TransactionLayer()
    layer.receive(request, NAT, "udp", 0.0)
    return request.headers.get_fields("Via")


def test_single_via_gets_received_and_rport() -> None:
    request = invite("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;rport")
    assert stamped(request) == [
        "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;rport=40123;received=203.0.113.7"
    ]
    assert request.top_via.rport == 40123


def test_vias_in_fields_of_their_own_are_kept_verbatim() -> None:
    lower = "SIP/2.0/UDP  proxy.example.com:5070 ; branch=z9hG4bKp ;received=192.0.2.1"
    request = invite("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK2", lower, "SIP/2.0/TCP c.example.com")
    assert stamped(request) == [
        "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK2;received=203.0.113.7",
        lower,
        "SIP/2.0/TCP c.example.com",
    ]
    assert [via.host for via in request.vias] == [
        "10.0.0.5",
        "proxy.example.com",
        "c.example.com",
    ]


def test_a_top_field_holding_several_vias_is_rewritten_as_a_whole() -> None:
    request = invite("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK3;rport, SIP/2.0/UDP p.example.com")
    assert stamped(request) == [
        "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK3;rport=40123;received=203.0.113.7",
        "SIP/2.0/UDP p.example.com",
    ]


def test_matching_source_without_rport_is_left_alone() -> None:
    field = "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK4"
    request = invite(field)
    assert stamped(request) == [field]
