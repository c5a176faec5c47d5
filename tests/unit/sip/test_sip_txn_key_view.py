"""The server transaction key a request leaves in its views for its responses.

``send_response`` takes the key from the response's views when they hold the one its
request's Via and CSeq texts gave, and works it out otherwise: either way, the key it would
have worked out.
"""

from __future__ import annotations

import pytest

from pypbx.sip.message import Request, Response, make_response, parse_message
from pypbx.sip.transaction import (
    _KEY_VIEW,
    TransactionLayer,
    Transmit,
    _key_for,
    _response_key,
)

SOURCE = ("203.0.113.7", 40123)


def request(method: str = "REGISTER", branch: str = "z9hG4bK-1", cseq: str = "") -> Request:
    data = (
        f"{method} sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5062;branch={branch};rport\r\n"
        "From: <sip:1000@example.com>;tag=a\r\n"
        "To: <sip:1000@example.com>\r\n"
        "Call-ID: key-1\r\n"
        f"CSeq: {cseq or '1 ' + method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def received(message: Request) -> TransactionLayer:
    layer = TransactionLayer()
    layer.receive(message, SOURCE, "udp", 0.0)
    layer.pop_events()
    return layer


def sent(layer: TransactionLayer, response: Response) -> list[object]:
    layer.send_response(response, 1.0)
    return layer.pop_events()


@pytest.mark.parametrize("method", ["REGISTER", "OPTIONS", "INVITE", "BYE"])
def test_a_response_finds_its_transaction_by_the_remembered_key(method: str) -> None:
    message = request(method)
    layer = received(message)
    assert _KEY_VIEW in message._cache
    response = make_response(message, 200, to_tag="t")
    key = _response_key(response, response.top_via)
    assert key == _key_for(response, response.cseq[1], server=True)
    assert key in layer._servers
    events = sent(layer, response)
    assert [type(event) for event in events] == [Transmit]


def test_a_changed_via_or_cseq_is_worked_out_again() -> None:
    message = request()
    received(message)
    for header, value in (
        ("Via", "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-other"),
        ("CSeq", "1 OPTIONS"),
    ):
        response = make_response(message, 200, to_tag="t")
        response.headers.set(header, value)
        key = _response_key(response, response.top_via)
        assert key == _key_for(response, response.cseq[1], server=True)
        assert key != _key_for(message, "REGISTER", server=True)


def test_a_response_built_without_the_views_works_it_out() -> None:
    message = request()
    layer = received(message)
    response = make_response(message, 200, to_tag="t")
    response._cache.clear()
    assert [type(event) for event in sent(layer, response)] == [Transmit]


def test_rfc2543_keys_and_acks_are_not_remembered() -> None:
    old = request(branch="12345")  # no magic cookie: Call-ID and CSeq are in the key
    received(old)
    assert _KEY_VIEW not in old._cache
    ack = request("ACK")
    received(ack)
    assert _KEY_VIEW not in ack._cache


def test_the_retransmission_of_a_completed_request_is_answered_again() -> None:
    message = request()
    layer = received(message)
    final = sent(layer, make_response(message, 200, to_tag="t"))
    again = request()
    layer.receive(again, SOURCE, "udp", 2.0)
    events = layer.pop_events()
    assert len(events) == 1
    assert events[0].data == final[0].data  # type: ignore[attr-defined]
