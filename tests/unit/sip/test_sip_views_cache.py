"""Lookup index of Headers and the parsed-view cache of messages stay exact under change.

Both are pure speed-ups: every test here checks that what a caller reads after a change is
what a fresh parse of the same headers would give.
"""

from __future__ import annotations

from pypbx.sip.message import Headers, Request, Via, make_response, parse_message
from pypbx.sip.transaction import RequestReceived, Retransmit, TransactionLayer, Transmit

REGISTER = (
    b"REGISTER sip:pbx.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bK-r1;rport\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-below\r\n"
    b"From: <sip:1000@pbx.test>;tag=a1\r\n"
    b"To: <sip:1000@pbx.test>\r\n"
    b"Call-ID: reg-1\r\n"
    b"CSeq: 7 REGISTER\r\n"
    b"Contact: <sip:1000@192.0.2.20:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def register() -> Request:
    request = parse_message(REGISTER)
    assert isinstance(request, Request)
    return request


def test_lookups_follow_every_change() -> None:
    headers = Headers([("Via", "a"), ("v", "b"), ("X-Custom", "1")])
    assert headers.get("VIA") == "a" and headers.get("x-custom") == "1"
    headers.insert_first("Via", "top")
    assert headers.get("v") == "top"
    headers.add("Subject", "s")
    assert headers.get("s") == "s" and "Subject" in headers
    headers.replace_first("Via", "new-top")
    assert headers.get_fields("Via") == ["new-top", "a", "b"] and headers.get("Via") == "new-top"
    headers.set("Via", "only")
    assert headers.get_fields("Via") == ["only"] and headers.get("Via") == "only"
    headers.remove("Via")
    assert headers.get("Via") is None and "Via" not in headers
    headers.replace_first("Via", "added")
    assert headers.get_fields("Via") == ["added"]
    assert headers.get("Missing", "default") == "default"


def test_add_does_not_shadow_the_first_value() -> None:
    headers = Headers([("Contact", "<sip:a@h>")])
    assert headers.get("Contact") == "<sip:a@h>"
    headers.add("Contact", "<sip:b@h>")
    assert headers.get("Contact") == "<sip:a@h>"


def test_response_views_come_from_the_request_only_while_the_text_is_the_same() -> None:
    request = register()
    tagged_to = request.to_addr
    response = make_response(request, 200, to_tag="t9")
    assert response.top_via is request.top_via  # same text: parsed once
    assert response.cseq == (7, "REGISTER")
    assert response.to_addr is not tagged_to  # the tag changed the text: parsed anew
    assert response.to_addr.tag == "t9" and request.to_addr.tag is None


def test_replace_top_via_rewrites_only_the_top_field() -> None:
    request = register()
    stamped = request.top_via.copy(params={**request.top_via.params, "received": "10.0.0.1"})
    request.replace_top_via(stamped)
    assert request.top_via is stamped
    assert request.headers.get_fields("Via") == [
        "SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bK-r1;rport;received=10.0.0.1",
        "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-below",
    ]
    assert parse_message(request.serialize()).top_via == stamped


def test_replace_top_via_in_a_shared_field_rewrites_the_list() -> None:
    request = register()
    request.headers.set("Via", "SIP/2.0/UDP a.test;branch=z9hG4bK-1, SIP/2.0/UDP b.test")
    request.replace_top_via(Via("UDP", "c.test", 5070, {"branch": "z9hG4bK-2"}))
    assert request.headers.get_fields("Via") == [
        "SIP/2.0/UDP c.test:5070;branch=z9hG4bK-2",
        "SIP/2.0/UDP b.test",
    ]
    assert request.top_via.host == "c.test"


def test_forgotten_views_are_parsed_again_the_same() -> None:
    request = register()
    before = (request.top_via, request.from_addr, request.to_addr, request.cseq)
    request.forget_views()
    after = (request.top_via, request.from_addr, request.to_addr, request.cseq)
    assert after == before and after[0] is not before[0]


def test_a_completed_transaction_still_answers_retransmissions() -> None:
    layer = TransactionLayer()
    source = ("192.0.2.99", 40000)
    layer.receive(register(), source, "udp", 0.0)
    [event] = layer.pop_events()
    assert isinstance(event, RequestReceived) and event.transaction is not None
    response = make_response(event.request, 200, to_tag="t1")
    layer.send_response(response, 0.0)
    [sent] = layer.pop_events()
    assert isinstance(sent, Transmit) and sent.dest == ("192.0.2.99", 40000)
    assert event.transaction.state == "completed"
    layer.receive(register(), source, "udp", 1.0)  # the phone did not hear the 200
    [again] = layer.pop_events()
    assert isinstance(again, Retransmit) and again.dest == sent.dest
    assert again.data == sent.message.serialize() == sent.data
    assert event.transaction.last_response is response and response.status == 200
