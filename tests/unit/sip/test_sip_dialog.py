"""Dialog state (RFC 3261 §12): creation from both sides, routing, CSeq and target refresh."""

from __future__ import annotations

import pytest

from pypbx.sip.dialog import Dialog
from pypbx.sip.message import Request, Response, SipURI, Via, make_response, parse_message

INVITE = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    "Max-Forwards: 69\r\n"
    "Record-Route: <sip:p2.example.com;lr>\r\n"
    "Record-Route: <sip:p1.example.com;lr>\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    'From: "Alice A" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    "Content-Length: 0\r\n\r\n"
)

OUR_VIA = Via("UDP", "pbx.example.com", 5060, {"branch": "z9hG4bKours"})


def parse_request(text: str) -> Request:
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def answer(request: Request, status: int, contact: str, *, record_route: bool = True) -> Response:
    response = make_response(request, status, to_tag="a6c85cf")
    if record_route:
        for value in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", value)
    response.headers.add("Contact", contact)
    return response


def in_dialog(method: str, cseq: int, *, contact: str | None = None) -> Request:
    """A request from Bob to Alice inside the dialog of INVITE."""
    text = (
        f"{method} sip:alice@pc33.atlanta.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP bob.example.com;branch=z9hG4bKb\r\n"
        'To: "Alice A" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
        "From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        "Call-ID: a84b4c76e66710\r\n"
        f"CSeq: {cseq} {method}\r\n"
        + (f"Contact: {contact}\r\n" if contact else "")
        + "Content-Length: 0\r\n\r\n"
    )
    return parse_request(text)


# -- UAC side -------------------------------------------------------------------------------------


def test_uac_dialog_from_2xx() -> None:
    invite = parse_request(INVITE)
    ok = answer(invite, 200, "<sip:bob@192.0.2.4>")
    dialog = Dialog.from_uac(invite, ok)
    assert dialog.id == ("a84b4c76e66710", "1928301774", "a6c85cf")
    assert dialog.state == "confirmed"
    assert dialog.local_seq == 314159 and dialog.remote_seq is None
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    assert str(dialog.local_uri) == '"Alice A" <sip:alice@atlanta.example.com>'
    assert str(dialog.remote_uri) == '"Bob" <sip:bob@biloxi.example.com>'
    # UAC: Record-Route reversed.
    assert [str(route) for route in dialog.route_set] == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]
    assert str(dialog.next_hop()) == "sip:p1.example.com;lr"
    assert str(dialog.local_target) == "sip:alice@pc33.atlanta.example.com"


def test_uac_loose_routing_bye() -> None:
    invite = parse_request(INVITE)
    dialog = Dialog.from_uac(invite, answer(invite, 200, "<sip:bob@192.0.2.4>"))
    bye = dialog.create_request("BYE", OUR_VIA)
    assert dialog.local_seq == 314160
    assert bye.serialize() == (
        b"BYE sip:bob@192.0.2.4 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bKours\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b'From: "Alice A" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
        b'To: "Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n'
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 314160 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_uac_early_dialog_confirmed_by_2xx_recomputes_route_set() -> None:
    invite = parse_request(INVITE)
    ringing = answer(invite, 180, "<sip:bob@192.0.2.4>")
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.state == "early"
    assert len(dialog.route_set) == 2
    ok = answer(invite, 200, "<sip:bob@192.0.2.99>", record_route=False)
    dialog.confirm(ok)
    assert dialog.state == "confirmed"
    assert dialog.route_set == []
    assert str(dialog.remote_target) == "sip:bob@192.0.2.99"
    assert str(dialog.next_hop()) == "sip:bob@192.0.2.99"


def test_provisional_without_tag_creates_no_dialog() -> None:
    invite = parse_request(INVITE)
    trying = make_response(invite, 100)
    with pytest.raises(ValueError, match="provisional response without To tag"):
        Dialog.from_uac(invite, trying)


def test_2xx_without_tag_gives_untagged_to() -> None:
    invite = parse_request(INVITE)
    ok = make_response(invite, 200)
    ok.headers.add("Contact", "<sip:bob@192.0.2.4>")
    dialog = Dialog.from_uac(invite, ok)
    assert dialog.remote_tag is None
    bye = dialog.create_request("BYE", OUR_VIA)
    assert bye.headers.get("To") == '"Bob" <sip:bob@biloxi.example.com>'


def test_request_without_from_tag_is_rejected() -> None:
    invite = parse_request(INVITE.replace(";tag=1928301774", ""))
    with pytest.raises(ValueError, match="request has no From tag"):
        Dialog.from_uac(invite, answer(invite, 200, "<sip:bob@192.0.2.4>"))


def test_create_ack_keeps_invite_cseq_and_routes() -> None:
    invite = parse_request(INVITE)
    dialog = Dialog.from_uac(invite, answer(invite, 200, "<sip:bob@192.0.2.4>"))
    ack = dialog.create_ack(314159, OUR_VIA, body=b"v=0\r\n", content_type="application/sdp")
    assert dialog.local_seq == 314159  # ACK does not consume a CSeq number
    assert ack.method == "ACK" and str(ack.uri) == "sip:bob@192.0.2.4"
    assert ack.cseq == (314159, "ACK")
    assert ack.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert ack.headers.get("Content-Type") == "application/sdp"
    assert ack.body == b"v=0\r\n"
    assert ack.serialize().endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    assert "Contact" not in ack.headers


def test_reinvite_carries_contact_and_extra_headers() -> None:
    invite = parse_request(INVITE)
    dialog = Dialog.from_uac(invite, answer(invite, 200, "<sip:bob@192.0.2.4>"))
    reinvite = dialog.create_request(
        "INVITE", OUR_VIA, extra_headers=[("Supported", "timer")], content_type="application/sdp"
    )
    assert reinvite.cseq == (314160, "INVITE")
    assert reinvite.headers.get("Contact") == "<sip:alice@pc33.atlanta.example.com>"
    assert reinvite.headers.get("Supported") == "timer"
    own_contact = dialog.create_request("UPDATE", OUR_VIA, extra_headers=[("m", "<sip:x@y>")])
    assert own_contact.headers.get_all("Contact") == ["<sip:x@y>"]
    info = dialog.create_request("INFO", OUR_VIA)
    assert "Contact" not in info.headers
    cancel = dialog.create_request("CANCEL", OUR_VIA)
    assert cancel.cseq == (314162, "CANCEL")  # same number as the request it cancels


# -- strict routing -------------------------------------------------------------------------------


def test_strict_routing_puts_first_route_in_request_uri() -> None:
    invite = parse_request(
        INVITE.replace(
            "Record-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr>\r\n",
            "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;method=INVITE?X=1>\r\n",
        )
    )
    dialog = Dialog.from_uac(invite, answer(invite, 200, "<sip:bob@192.0.2.4;transport=udp>"))
    assert str(dialog.next_hop()) == "sip:p1.example.com;method=INVITE?X=1"
    bye = dialog.create_request("BYE", OUR_VIA)
    assert str(bye.uri) == "sip:p1.example.com"  # method param and headers stripped
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:bob@192.0.2.4;transport=udp>",
    ]
    # The route set itself is untouched.
    assert str(dialog.route_set[0]) == "<sip:p1.example.com;method=INVITE?X=1>"


# -- UAS side -------------------------------------------------------------------------------------


def test_uas_dialog_route_set_in_order() -> None:
    invite = parse_request(INVITE)
    dialog = Dialog.from_uas(invite, "a6c85cf", local_target=SipURI.parse("sip:pbx@10.0.0.1"))
    assert dialog.id == ("a84b4c76e66710", "a6c85cf", "1928301774")
    assert dialog.local_seq == 0 and dialog.remote_seq == 314159
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"
    assert [str(route) for route in dialog.route_set] == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]
    bye = dialog.create_request("BYE", OUR_VIA)
    assert bye.serialize() == (
        b"BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bKours\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b'From: "Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n'
        b'To: "Alice A" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 1 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    reinvite = dialog.create_request("INVITE", OUR_VIA)
    assert reinvite.cseq == (2, "INVITE")
    assert reinvite.headers.get("Contact") == "<sip:pbx@10.0.0.1>"


def test_uas_without_record_route_or_contact() -> None:
    text = INVITE.replace("Contact: <sip:alice@pc33.atlanta.example.com>\r\n", "")
    text = text.replace("Record-Route: <sip:p2.example.com;lr>\r\n", "")
    text = text.replace("Record-Route: <sip:p1.example.com;lr>\r\n", "")
    dialog = Dialog.from_uas(parse_request(text), "t")
    assert dialog.route_set == []
    assert str(dialog.remote_target) == "sip:alice@atlanta.example.com"  # From URI fallback
    assert dialog.local_target is None


# -- requests we receive --------------------------------------------------------------------------


def test_remote_cseq_must_not_go_backwards() -> None:
    dialog = Dialog.from_uas(parse_request(INVITE), "a6c85cf")
    assert dialog.accept_request(in_dialog("INFO", 314160))
    assert dialog.remote_seq == 314160
    assert not dialog.accept_request(in_dialog("INFO", 314100))
    assert dialog.remote_seq == 314160
    assert dialog.accept_request(in_dialog("INFO", 314160))  # equal is not out of order
    assert dialog.accept_request(in_dialog("ACK", 314159))  # ACK/CANCEL are exempt
    assert dialog.accept_request(in_dialog("CANCEL", 1))
    assert dialog.remote_seq == 314160
    assert dialog.accept_request(in_dialog("BYE", 400000))
    assert dialog.remote_seq == 400000


def test_first_remote_request_sets_empty_remote_seq() -> None:
    invite = parse_request(INVITE)
    dialog = Dialog.from_uac(invite, answer(invite, 200, "<sip:bob@192.0.2.4>"))
    assert dialog.remote_seq is None
    assert dialog.accept_request(in_dialog("BYE", 1))
    assert dialog.remote_seq == 1
    assert not dialog.accept_request(in_dialog("INFO", 0))


def test_target_refresh() -> None:
    invite = parse_request(INVITE)
    dialog = Dialog.from_uac(invite, answer(invite, 200, "<sip:bob@192.0.2.4>"))
    dialog.refresh_target(in_dialog("INVITE", 5, contact="<sip:bob@198.51.100.9:5070>"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.9:5070"
    dialog.refresh_target(in_dialog("UPDATE", 6))  # no Contact: target unchanged
    assert str(dialog.remote_target) == "sip:bob@198.51.100.9:5070"
    bye = dialog.create_request("BYE", OUR_VIA)
    assert str(bye.uri) == "sip:bob@198.51.100.9:5070"
    assert len(dialog.route_set) == 2  # a target refresh never touches the route set


def test_dialog_state_is_independent_of_the_messages() -> None:
    invite = parse_request(INVITE)
    ok = answer(invite, 200, "<sip:bob@192.0.2.4>")
    dialog = Dialog.from_uac(invite, ok)
    dialog.remote_target.params["x"] = "1"
    dialog.route_set[0].params["y"] = "2"
    assert str(ok.contacts[0]) == "<sip:bob@192.0.2.4>"
    assert [str(route) for route in ok.record_routes] == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]
    assert repr(dialog) == "<Dialog a84b4c76e66710 1928301774/a6c85cf confirmed>"
