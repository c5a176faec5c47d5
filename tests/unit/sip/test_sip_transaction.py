"""Transaction layer scenarios (RFC 3261 §17, RFC 6026, RFC 3581) driven by a fake clock."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.sip.message import Request, Response, Via, make_response, parse_message
from pypbx.sip.transaction import (
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    Retransmit,
    ServerTransaction,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    Transmit,
    make_ack_for_non2xx,
    make_cancel,
    via_destination,
)

PEER = ("192.0.2.10", 5060)
NAT = ("203.0.113.7", 40123)  # where a NATed phone's packets really come from
BRANCH = "z9hG4bK74bf9"


def request(
    method: str = "INVITE",
    *,
    branch: str = BRANCH,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060",
    cseq: int = 1,
    call_id: str = "a84b4c76e66710@pc33",
    extra: str = "",
) -> Request:
    branch_param = f";branch={branch}" if branch else ""
    text = (
        f"{method} sip:bob@198.51.100.1 SIP/2.0\r\n"
        f"Via: {via}{branch_param}\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@example.com>\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@192.0.2.10>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def ack_for(
    response: Response,
    *,
    branch: str = BRANCH,
    cseq: int = 1,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060",
) -> Request:
    """An ACK as the peer would send it, To copied from our response."""
    text = (
        "ACK sip:bob@198.51.100.1 SIP/2.0\r\n"
        f"Via: {via};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {response.headers.get('To')}\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33\r\n"
        f"CSeq: {cseq} ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def transmits(events: list[Event]) -> list[Transmit]:
    return [event for event in events if isinstance(event, Transmit)]


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, Event]]:
    """Fire every timer up to ``until`` exactly at its deadline, recording when events came."""
    seen: list[tuple[float, Event]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        seen.extend((deadline, event) for event in layer.pop_events())
    return seen


def transmit_times(seen: list[tuple[float, Event]]) -> list[float]:
    return [when for when, event in seen if isinstance(event, Transmit)]


# -- INVITE client --------------------------------------------------------------------------------


def test_invite_client_retransmits_doubling_then_timer_b() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, "udp", 0.0)
    assert isinstance(txn, ClientTransaction)
    assert txn.state == "calling" and txn.is_invite and len(layer) == 1
    assert layer.pop_events() == [Transmit(invite, PEER, "udp")]
    assert layer.next_deadline() == 0.5

    seen = run_timers(layer, 100.0)
    # Timer A: 0.5, 1, 2, 4, 8, 16 -- no T2 cap for INVITE.
    assert transmit_times(seen) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    rest = [(when, type(event)) for when, event in seen if not isinstance(event, Transmit)]
    assert rest == [(32.0, TransactionTimeout), (32.0, TransactionTerminated)]
    assert txn.state == "terminated"
    assert len(layer) == 0 and layer.next_deadline() is None


def test_invite_client_provisional_stops_retransmissions() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, "udp", 0.0)
    layer.pop_events()
    ringing = make_response(invite, 180, to_tag="b0b")
    layer.receive(ringing, PEER, "udp", 0.2)
    assert layer.pop_events() == [ResponseReceived(ringing, txn)]
    assert txn.state == "proceeding" and txn.last_response is ringing
    assert layer.next_deadline() is None  # neither A nor B in Proceeding
    assert len(layer) == 1


def test_invite_client_non2xx_is_acked_inside_the_transaction() -> None:
    layer = TransactionLayer()
    invite = request(extra="Route: <sip:proxy.example.com;lr>\r\n")
    txn = layer.send_request(invite, PEER, "udp", 0.0)
    layer.pop_events()
    busy = make_response(invite, 486, to_tag="b0b")
    layer.receive(busy, PEER, "udp", 1.0)
    events = layer.pop_events()
    assert kinds(events) == ["Transmit", "ResponseReceived"]
    ack = events[0]
    assert isinstance(ack, Transmit) and ack.dest == PEER and ack.transport == "udp"
    assert isinstance(ack.message, Request)
    assert ack.message.method == "ACK"
    assert ack.message.top_via.branch == BRANCH
    assert ack.message.to_addr.tag == "b0b"
    assert ack.message.cseq == (1, "ACK")
    assert ack.message.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    assert events[1] == ResponseReceived(busy, txn)
    assert txn.state == "completed"

    # A retransmitted 486 is answered with the same ACK and not passed up again.
    layer.receive(make_response(invite, 486, to_tag="b0b"), PEER, "udp", 2.0)
    assert layer.pop_events() == [Transmit(ack.message, PEER, "udp")]

    assert layer.next_deadline() == 33.0  # Timer D: 32 s after the 486
    seen = run_timers(layer, 100.0)
    assert [type(event) for _, event in seen] == [TransactionTerminated]
    assert len(layer) == 0


def test_invite_client_2xx_accepted_state_passes_retransmits_up() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, "udp", 0.0)
    layer.pop_events()
    ok = make_response(invite, 200, to_tag="b0b")
    layer.receive(ok, PEER, "udp", 0.1)
    assert layer.pop_events() == [ResponseReceived(ok, txn)]  # no ACK: that is the TU's job
    assert txn.state == "accepted"
    again = make_response(invite, 200, to_tag="b0b")
    layer.receive(again, PEER, "udp", 0.6)
    assert layer.pop_events() == [ResponseReceived(again, txn)]
    # Non-2xx after a 2xx is ignored in Accepted.
    layer.receive(make_response(invite, 500, to_tag="other"), PEER, "udp", 0.7)
    assert layer.pop_events() == []

    assert layer.next_deadline() == pytest.approx(32.1)  # Timer M = 64*T1
    layer.handle_timer(32.1)
    assert kinds(layer.pop_events()) == ["TransactionTerminated"]
    assert len(layer) == 0
    late = make_response(invite, 200, to_tag="b0b")
    layer.receive(late, PEER, "udp", 40.0)
    assert layer.pop_events() == [ResponseReceived(late, None)]  # stray: the TU re-ACKs


def test_invite_client_over_tcp_has_no_retransmissions_and_no_timer_d() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/TCP 192.0.2.10:5060")
    txn = layer.send_request(invite, PEER, "TCP", 0.0)
    assert layer.pop_events() == [Transmit(invite, PEER, "tcp")]
    assert layer.next_deadline() == 32.0  # only Timer B
    layer.receive(make_response(invite, 603, to_tag="x"), PEER, "tcp", 1.0)
    assert kinds(layer.pop_events()) == ["Transmit", "ResponseReceived", "TransactionTerminated"]
    assert txn.state == "terminated" and len(layer) == 0


def test_invite_client_timer_b_over_tcp() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), PEER, "tcp", 0.0)
    layer.pop_events()
    seen = run_timers(layer, 100.0)
    assert [(when, type(event)) for when, event in seen] == [
        (32.0, TransactionTimeout),
        (32.0, TransactionTerminated),
    ]


def test_cancelled_invite_without_final_is_given_up_after_64_t1() -> None:
    layer = TransactionLayer()
    invite = request()
    invite_txn = layer.send_request(invite, PEER, "udp", 0.0)
    layer.receive(make_response(invite, 180, to_tag="b0b"), PEER, "udp", 0.1)
    cancel = make_cancel(invite)
    cancel_txn = layer.send_request(cancel, PEER, "udp", 10.0)
    assert cancel_txn is not invite_txn and len(layer) == 2
    layer.receive(make_response(cancel, 200, to_tag="b0b"), PEER, "udp", 10.1)
    layer.pop_events()
    seen = run_timers(layer, 100.0)
    timeouts = [(when, e.transaction) for when, e in seen if isinstance(e, TransactionTimeout)]
    assert timeouts == [(42.0, invite_txn)]
    assert len(layer) == 0


def test_cancel_then_487_is_acked() -> None:
    layer = TransactionLayer()
    invite = request()
    invite_txn = layer.send_request(invite, PEER, "udp", 0.0)
    layer.receive(make_response(invite, 180, to_tag="b0b"), PEER, "udp", 0.1)
    layer.send_request(make_cancel(invite), PEER, "udp", 5.0)
    layer.pop_events()
    layer.receive(make_response(invite, 487, to_tag="b0b"), PEER, "udp", 5.1)
    events = layer.pop_events()
    assert kinds(events) == ["Transmit", "ResponseReceived"]
    assert invite_txn.state == "completed"
    seen = run_timers(layer, 100.0)
    assert not [e for _, e in seen if isinstance(e, TransactionTimeout) and e.transaction.is_invite]


# -- non-INVITE client ----------------------------------------------------------------------------


def test_non_invite_client_retransmits_capped_at_t2_then_timer_f() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    txn = layer.send_request(options, PEER, "udp", 0.0)
    assert txn.state == "trying" and not txn.is_invite
    layer.pop_events()
    seen = run_timers(layer, 100.0)
    # Timer E: 0.5, 1, 2, 4, 4, 4, ...
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert transmit_times(seen) == expected
    rest = [(when, type(event)) for when, event in seen if not isinstance(event, Transmit)]
    assert rest == [(32.0, TransactionTimeout), (32.0, TransactionTerminated)]
    assert len(layer) == 0


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    txn = layer.send_request(bye, PEER, "udp", 0.0)
    layer.pop_events()
    layer.receive(make_response(bye, 100), PEER, "udp", 0.1)
    assert txn.state == "proceeding"
    assert kinds(layer.pop_events()) == ["ResponseReceived"]
    seen = run_timers(layer, 12.0)
    assert transmit_times(seen) == [0.5, 4.5, 8.5]


def test_non_invite_client_final_then_timer_k() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    txn = layer.send_request(bye, PEER, "udp", 0.0)
    layer.pop_events()
    ok = make_response(bye, 200, to_tag="b0b")
    layer.receive(ok, PEER, "udp", 0.3)
    assert layer.pop_events() == [ResponseReceived(ok, txn)]
    assert txn.state == "completed"
    layer.receive(make_response(bye, 200, to_tag="b0b"), PEER, "udp", 0.4)
    assert layer.pop_events() == []  # retransmission absorbed
    assert layer.next_deadline() == pytest.approx(5.3)  # Timer K = T4
    run_timers(layer, 10.0)
    assert len(layer) == 0


def test_non_invite_client_over_tcp_terminates_on_final() -> None:
    layer = TransactionLayer()
    register = request("REGISTER")
    layer.send_request(register, PEER, "tcp", 0.0)
    layer.pop_events()
    assert layer.next_deadline() == 32.0  # Timer F only
    layer.receive(make_response(register, 200, to_tag="r"), PEER, "tcp", 0.1)
    assert kinds(layer.pop_events()) == ["ResponseReceived", "TransactionTerminated"]
    assert len(layer) == 0


def test_send_request_rejects_ack_and_duplicate_branch() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="ACK has no client transaction"):
        layer.send_request(request("ACK"), PEER, "udp", 0.0)
    layer.send_request(request("OPTIONS"), PEER, "udp", 0.0)
    with pytest.raises(ValueError, match="already exists"):
        layer.send_request(request("OPTIONS"), PEER, "udp", 0.0)


def test_send_stateless() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKack2xx")
    layer.send_stateless(ack, PEER, "UDP")
    assert layer.pop_events() == [Transmit(ack, PEER, "udp")]
    assert len(layer) == 0


def test_client_matching_needs_method_and_branch() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, "udp", 0.0)
    layer.pop_events()
    # Same branch but CSeq method CANCEL: not the INVITE transaction's response.
    cancel_resp = make_response(make_cancel(invite), 200)
    layer.receive(cancel_resp, PEER, "udp", 0.1)
    assert layer.pop_events() == [ResponseReceived(cancel_resp, None)]
    other = make_response(request(branch="z9hG4bKother"), 180)
    layer.receive(other, PEER, "udp", 0.1)
    assert layer.pop_events() == [ResponseReceived(other, None)]
    assert txn.state == "calling"


# -- INVITE server --------------------------------------------------------------------------------


def test_invite_server_sends_trying_and_answers_retransmits_from_cache() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, "udp", 0.0)
    events = layer.pop_events()
    assert kinds(events) == ["Transmit", "RequestReceived"]
    trying = events[0]
    assert isinstance(trying, Transmit) and isinstance(trying.message, Response)
    assert trying.message.status == 100 and trying.dest == PEER
    received = events[1]
    assert isinstance(received, RequestReceived)
    txn = received.transaction
    assert isinstance(txn, ServerTransaction)
    assert txn.state == "proceeding" and txn.source == PEER and txn.transport == "udp"
    assert received.request is invite and txn.request is invite

    layer.receive(request(), PEER, "udp", 0.5)  # retransmission: the 100 again
    assert layer.pop_events() == [Transmit(trying.message, PEER, "udp")]
    ringing = make_response(invite, 180, to_tag="t0")
    layer.send_response(ringing, 1.0)
    assert layer.pop_events() == [Transmit(ringing, PEER, "udp")]
    layer.receive(request(), PEER, "udp", 1.5)
    assert layer.pop_events() == [Transmit(ringing, PEER, "udp")]
    assert txn.last_response is ringing
    assert layer.next_deadline() is None  # nothing to time in Proceeding


def test_invite_server_without_auto_trying() -> None:
    layer = TransactionLayer(auto_trying=False)
    layer.receive(request(), PEER, "udp", 0.0)
    assert kinds(layer.pop_events()) == ["RequestReceived"]
    layer.receive(request(), PEER, "udp", 0.5)
    assert layer.pop_events() == []  # nothing sent yet, nothing to repeat


def test_invite_server_non2xx_timer_g_until_ack_then_timer_i() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, "udp", 0.0)
    txn = layer.pop_events()[1].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    busy = make_response(invite, 486, to_tag="t0")
    layer.send_response(busy, 1.0)
    assert layer.pop_events() == [Transmit(busy, PEER, "udp")]
    assert txn.state == "completed"
    seen = run_timers(layer, 9.0)
    # Timer G: 0.5, 1, 2, 4, 4 -- capped at T2.
    assert transmit_times(seen) == [1.5, 2.5, 4.5, 8.5]
    assert all(event == Transmit(busy, PEER, "udp") for _, event in seen)
    layer.receive(request(), PEER, "udp", 9.0)  # INVITE retransmit gets the 486 again
    assert layer.pop_events() == [Transmit(busy, PEER, "udp")]

    layer.receive(ack_for(busy), PEER, "udp", 9.5)
    assert layer.pop_events() == []  # the ACK of a non-2xx is absorbed
    assert txn.state == "confirmed"
    layer.receive(ack_for(busy), PEER, "udp", 9.6)
    assert layer.pop_events() == []
    assert layer.next_deadline() == pytest.approx(14.5)  # Timer I = T4; G and H gone
    seen = run_timers(layer, 100.0)
    assert [type(event) for _, event in seen] == [TransactionTerminated]
    assert len(layer) == 0


def test_invite_server_timer_h_when_ack_never_comes() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, "udp", 0.0)
    layer.pop_events()
    layer.send_response(make_response(invite, 404, to_tag="t0"), 0.0)
    layer.pop_events()
    seen = run_timers(layer, 100.0)
    assert transmit_times(seen) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    rest = [(when, type(event)) for when, event in seen if not isinstance(event, Transmit)]
    assert rest == [(32.0, TransactionTimeout), (32.0, TransactionTerminated)]
    assert len(layer) == 0


def test_invite_server_2xx_accepted_then_timer_l() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, "udp", 0.0)
    txn = layer.pop_events()[1].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    ok = make_response(invite, 200, to_tag="t0")
    layer.send_response(ok, 1.0)
    assert layer.pop_events() == [Transmit(ok, PEER, "udp")]
    assert txn.state == "accepted"
    layer.receive(request(), PEER, "udp", 1.2)
    assert layer.pop_events() == []  # INVITE retransmits absorbed (RFC 6026)
    layer.send_response(ok, 1.5)  # the TU's own 2xx retransmission goes through
    assert layer.pop_events() == [Transmit(ok, PEER, "udp")]
    layer.send_response(make_response(invite, 500, to_tag="t0"), 1.6)
    assert layer.pop_events() == []  # too late for a non-2xx

    ack = ack_for(ok, branch="z9hG4bKack2xx")
    layer.receive(ack, PEER, "udp", 2.0)
    assert layer.pop_events() == [RequestReceived(ack, PEER, "udp", None)]
    assert layer.next_deadline() == 33.0  # Timer L = 64*T1
    run_timers(layer, 100.0)
    assert len(layer) == 0
    # Once the transaction is gone a 2xx retransmit is sent statelessly, by its Via.
    layer.send_response(ok, 40.0)
    assert layer.pop_events() == [Transmit(ok, PEER, "udp")]


def test_ack_reusing_invite_branch_in_accepted_goes_to_tu() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, "udp", 0.0)
    ok = make_response(invite, 200, to_tag="t0")
    layer.send_response(ok, 0.1)
    layer.pop_events()
    ack = ack_for(ok)  # same branch as the INVITE, as some old phones do
    layer.receive(ack, PEER, "udp", 0.2)
    assert layer.pop_events() == [RequestReceived(ack, PEER, "udp", None)]


def test_invite_server_over_tcp() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/TCP 10.1.1.1:5099")
    layer.receive(invite, NAT, "tcp", 0.0)
    events = layer.pop_events()
    assert kinds(events) == ["Transmit", "RequestReceived"]
    assert events[0].dest == NAT  # type: ignore[union-attr]
    layer.send_response(make_response(invite, 486, to_tag="t0"), 0.0)
    assert transmits(layer.pop_events())[0].dest == NAT
    assert layer.next_deadline() == 32.0  # Timer H only, no G
    ack = ack_for(make_response(invite, 486, to_tag="t0"), via="SIP/2.0/TCP 10.1.1.1:5099")
    layer.receive(ack, NAT, "tcp", 0.1)
    assert kinds(layer.pop_events()) == ["TransactionTerminated"]  # Timer I = 0
    assert len(layer) == 0


def test_ack_without_transaction_goes_to_tu() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKnew")
    layer.receive(ack, PEER, "udp", 0.0)
    assert layer.pop_events() == [RequestReceived(ack, PEER, "udp", None)]
    assert len(layer) == 0


def test_ack_in_proceeding_is_dropped() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, "udp", 0.0)
    layer.pop_events()
    layer.receive(ack_for(make_response(invite, 180)), PEER, "udp", 0.1)
    assert layer.pop_events() == []


# -- non-INVITE server ----------------------------------------------------------------------------


def test_non_invite_server_absorbs_then_repeats_then_timer_j() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    layer.receive(options, PEER, "udp", 0.0)
    events = layer.pop_events()
    assert kinds(events) == ["RequestReceived"]  # no automatic 100 for non-INVITE
    txn = events[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction) and txn.state == "trying"
    layer.receive(request("OPTIONS"), PEER, "udp", 0.5)
    assert layer.pop_events() == []  # Trying: absorbed

    trying = make_response(options, 100)
    layer.send_response(trying, 0.6)
    assert txn.state == "proceeding"
    layer.receive(request("OPTIONS"), PEER, "udp", 0.7)
    assert layer.pop_events() == [Transmit(trying, PEER, "udp"), Transmit(trying, PEER, "udp")]

    ok = make_response(options, 200, to_tag="t0")
    layer.send_response(ok, 1.0)
    assert layer.pop_events() == [Transmit(ok, PEER, "udp")]
    assert txn.state == "completed"
    layer.receive(request("OPTIONS"), PEER, "udp", 2.0)
    assert layer.pop_events() == [Retransmit(ok.serialize(), PEER, "udp")]
    layer.send_response(make_response(options, 500), 2.1)
    assert layer.pop_events() == []  # a second final is dropped
    assert layer.next_deadline() == 33.0  # Timer J = 64*T1
    assert len(layer) == 1
    layer.handle_timer(32.9)
    layer.receive(request("OPTIONS"), PEER, "udp", 32.9)
    assert layer.pop_events() == [Retransmit(ok.serialize(), PEER, "udp")]  # still completed
    run_timers(layer, 100.0)
    assert len(layer) == 0
    assert layer.next_deadline() is None
    # Timer J over: the same request again is a new transaction, passed up to the TU.
    layer.receive(request("OPTIONS"), PEER, "udp", 100.0)
    assert kinds(layer.pop_events()) == ["RequestReceived"]


def test_non_invite_server_over_tcp_ends_on_final() -> None:
    layer = TransactionLayer()
    bye = request("BYE", via="SIP/2.0/TCP 192.0.2.10")
    layer.receive(bye, PEER, "tcp", 0.0)
    txn = layer.pop_events()[0].transaction  # type: ignore[union-attr]
    assert txn is not None
    ok = make_response(bye, 200, to_tag="t0")
    layer.send_response(ok, 0.1)
    assert layer.pop_events() == [Transmit(ok, PEER, "tcp"), TransactionTerminated(txn)]
    assert len(layer) == 0
    assert layer.next_deadline() is None


# -- CANCEL ---------------------------------------------------------------------------------------


def test_cancel_matches_invite_server_transaction() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, "udp", 0.0)
    invite_txn = layer.pop_events()[1].transaction  # type: ignore[union-attr]
    cancel = make_cancel(invite)
    assert layer.cancel_target(cancel) is invite_txn
    layer.receive(cancel, PEER, "udp", 0.5)
    events = layer.pop_events()
    assert kinds(events) == ["RequestReceived"]
    cancel_txn = events[0].transaction  # type: ignore[union-attr]
    assert cancel_txn is not None and cancel_txn is not invite_txn
    assert layer.cancel_target(events[0].request) is invite_txn  # type: ignore[union-attr]
    assert len(layer) == 2

    stray = make_cancel(request(branch="z9hG4bKunknown"))
    assert layer.cancel_target(stray) is None
    other_host = make_cancel(request(via="SIP/2.0/UDP 192.0.2.99:5060"))
    assert layer.cancel_target(other_host) is None  # same branch, other sent-by


def test_cancel_target_of_garbage_is_none() -> None:
    layer = TransactionLayer()
    assert layer.cancel_target(Request("CANCEL", request().uri)) is None


# -- builders -------------------------------------------------------------------------------------


def test_make_cancel() -> None:
    invite = request(
        via="SIP/2.0/UDP 192.0.2.10:5060",
        extra="Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nSubject: hi\r\n",
        cseq=7,
    )
    cancel = make_cancel(invite)
    assert cancel.serialize() == (
        b"CANCEL sip:bob@198.51.100.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        b"To: Bob <sip:bob@example.com>\r\n"
        b"Call-ID: a84b4c76e66710@pc33\r\n"
        b"CSeq: 7 CANCEL\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_make_ack_for_non2xx_uses_response_to() -> None:
    invite = request(cseq=3)
    ack = make_ack_for_non2xx(invite, make_response(invite, 404, to_tag="xyz"))
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.cseq == (3, "ACK")
    assert ack.to_addr.tag == "xyz"
    assert ack.top_via.branch == BRANCH
    assert len(ack.vias) == 1
    assert ack.body == b""


def test_make_cancel_keeps_only_top_via() -> None:
    invite = request(
        branch="", via="SIP/2.0/UDP a.example.com;branch=z9hG4bKtop, SIP/2.0/UDP b.example.com"
    )
    cancel = make_cancel(invite)
    assert [str(via) for via in cancel.vias] == ["SIP/2.0/UDP a.example.com;branch=z9hG4bKtop"]


# -- response routing (§18.2.2, RFC 3581) ---------------------------------------------------------


def test_rport_sends_responses_to_the_nat_address() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/UDP 10.0.0.5:5062;rport")
    layer.receive(invite, NAT, "udp", 0.0)
    events = layer.pop_events()
    trying = events[0]
    assert isinstance(trying, Transmit) and trying.dest == NAT
    via = trying.message.top_via
    assert via.received == "203.0.113.7" and via.rport == 40123
    assert str(via) == (
        f"SIP/2.0/UDP 10.0.0.5:5062;rport=40123;branch={BRANCH};received=203.0.113.7"
    )
    assert invite.top_via == via  # stamped on the request the TU sees, too
    layer.send_response(make_response(invite, 180, to_tag="t"), 0.1)
    assert transmits(layer.pop_events())[0].dest == NAT


def test_received_without_rport_keeps_sent_by_port() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/UDP 10.0.0.5:5062")
    layer.receive(invite, NAT, "udp", 0.0)
    trying = transmits(layer.pop_events())[0]
    assert trying.dest == ("203.0.113.7", 5062)
    assert trying.message.top_via.received == "203.0.113.7"
    assert trying.message.top_via.rport is None


def test_matching_source_adds_nothing_and_default_port() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/UDP 192.0.2.10")
    layer.receive(invite, ("192.0.2.10", 33333), "udp", 0.0)
    trying = transmits(layer.pop_events())[0]
    assert trying.dest == ("192.0.2.10", 5060)
    assert "received" not in trying.message.top_via.params


@pytest.mark.parametrize(
    ("via", "dest", "transport"),
    [
        ("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKx", ("10.0.0.5", 5062), "udp"),
        ("SIP/2.0/UDP pc.example.com;branch=z9hG4bKx", ("pc.example.com", 5060), "udp"),
        ("SIP/2.0/TLS pc.example.com;branch=z9hG4bKx", ("pc.example.com", 5061), "tls"),
        ("SIP/2.0/UDP 10.0.0.5;received=1.2.3.4;branch=z9hG4bKx", ("1.2.3.4", 5060), "udp"),
        ("SIP/2.0/UDP 10.0.0.5:7;rport=9;received=1.2.3.4", ("1.2.3.4", 9), "udp"),
        ("SIP/2.0/UDP 10.0.0.5:7;rport;received=1.2.3.4", ("1.2.3.4", 7), "udp"),
        ("SIP/2.0/UDP 10.0.0.5:7;maddr=224.0.1.75;received=1.2.3.4", ("224.0.1.75", 7), "udp"),
        ("SIP/2.0/TCP 10.0.0.5:7;rport=9;received=1.2.3.4", ("1.2.3.4", 9), "tcp"),
    ],
)
def test_stateless_response_routing(via: str, dest: tuple[str, int], transport: str) -> None:
    assert via_destination(Via.parse(via)) == dest
    layer = TransactionLayer()
    response = make_response(request(branch="", via=via), 200, to_tag="t")
    layer.send_response(response, 0.0)
    assert layer.pop_events() == [Transmit(response, dest, transport)]


# -- matching details -----------------------------------------------------------------------------


def test_same_branch_from_two_hosts_are_two_transactions() -> None:
    layer = TransactionLayer()
    layer.receive(request("OPTIONS", via="SIP/2.0/UDP 192.0.2.10:5060"), PEER, "udp", 0.0)
    layer.receive(request("OPTIONS", via="SIP/2.0/UDP 192.0.2.11:5060"), PEER, "udp", 0.0)
    layer.receive(request("OPTIONS", via="SIP/2.0/UDP 192.0.2.10"), PEER, "udp", 0.0)
    events = layer.pop_events()
    assert kinds(events) == ["RequestReceived", "RequestReceived"]  # :5060 == default port
    assert len(layer) == 2


def test_same_branch_different_method_are_two_transactions() -> None:
    layer = TransactionLayer()
    layer.receive(request("OPTIONS"), PEER, "udp", 0.0)
    layer.receive(request("INFO"), PEER, "udp", 0.0)
    assert kinds(layer.pop_events()) == ["RequestReceived", "RequestReceived"]


def test_rfc2543_branches_keyed_with_call_id_and_cseq() -> None:
    layer = TransactionLayer()
    layer.receive(request("OPTIONS", branch="", cseq=1), PEER, "udp", 0.0)
    layer.receive(request("OPTIONS", branch="", cseq=1), PEER, "udp", 0.1)  # retransmission
    layer.receive(request("OPTIONS", branch="", cseq=2), PEER, "udp", 0.2)
    layer.receive(request("OPTIONS", branch="", cseq=2, call_id="other"), PEER, "udp", 0.3)
    layer.receive(request("OPTIONS", branch="1", cseq=2, call_id="other"), PEER, "udp", 0.3)
    assert kinds(layer.pop_events()) == ["RequestReceived"] * 4
    assert len(layer) == 4


def test_rfc2543_invite_ack_matches() -> None:
    layer = TransactionLayer()
    invite = request(branch="")
    layer.receive(invite, PEER, "udp", 0.0)
    layer.pop_events()
    busy = make_response(invite, 486, to_tag="t0")
    layer.send_response(busy, 0.1)
    layer.pop_events()
    layer.receive(request("ACK", branch=""), PEER, "udp", 1.0)
    assert layer.pop_events() == []
    assert layer.next_deadline() == pytest.approx(6.0)  # Timer I after the ACK


# -- robustness -----------------------------------------------------------------------------------


def test_garbage_never_raises() -> None:
    layer = TransactionLayer()
    no_via = Response(200)
    layer.receive(no_via, PEER, "udp", 0.0)
    layer.receive(Request("OPTIONS", request().uri), PEER, "udp", 0.0)
    bad_cseq = request("OPTIONS", branch="")
    bad_cseq.headers.set("CSeq", "x OPTIONS")
    layer.receive(bad_cseq, PEER, "udp", 0.0)
    bad_via = request("OPTIONS")
    bad_via.headers.set("Via", "garbage")
    layer.receive(bad_via, PEER, "udp", 0.0)
    weird = make_response(request(), 200)
    weird.status = 99
    layer.receive(weird, PEER, "udp", 0.0)
    assert layer.pop_events() == []
    assert len(layer) == 0
    layer.handle_timer(1e9)
    assert layer.next_deadline() is None


def test_no_leaks_after_mixed_traffic() -> None:
    layer = TransactionLayer()
    for index in range(20):
        branch = f"z9hG4bKsrv{index}"
        invite = request(branch=branch, cseq=index + 1)
        layer.receive(invite, PEER, "udp", 0.0)
        status = (200, 486, 180)[index % 3]
        layer.send_response(make_response(invite, status, to_tag="t"), 0.1)
        client = request("OPTIONS", branch=f"z9hG4bKcli{index}")
        layer.send_request(client, PEER, "udp" if index % 2 else "tcp", 0.0)
        if index % 4 == 0:
            layer.receive(make_response(client, 200), PEER, "udp", 0.2)
    layer.pop_events()
    assert len(layer) == 35  # the five TCP clients answered ended at once (Timer K = 0)
    run_timers(layer, 1000.0)
    # INVITEs left in Proceeding (180 only) stay until the TU answers them.
    assert len(layer) == 6
    pending = [txn for txn in layer._servers.values() if txn.state == "proceeding"]
    assert len(pending) == 6
    for txn in pending:
        layer.send_response(make_response(txn.request, 603, to_tag="t"), 1000.0)
    run_timers(layer, 2000.0)
    assert len(layer) == 0
    assert layer.next_deadline() is None


# -- property: arbitrary traffic never raises and never leaks -------------------------------------

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["recv_req", "recv_resp", "send_req", "send_resp", "tick"]),
        st.sampled_from(["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]),
        st.integers(min_value=0, max_value=3),  # branch index
        st.sampled_from([100, 180, 200, 302, 486, 503]),
        st.sampled_from(["udp", "tcp"]),
        st.floats(min_value=0.0, max_value=10.0),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops=_OPS)
def test_random_traffic_never_raises_and_never_leaks(
    ops: list[tuple[str, str, int, int, str, float]],
) -> None:
    layer = TransactionLayer()
    now = 0.0
    for op, method, index, status, transport, dt in ops:
        branch = f"z9hG4bK{index}"
        if op == "recv_req":
            layer.receive(request(method, branch=branch), PEER, transport, now)
        elif op == "recv_resp":
            layer.receive(make_response(request(method, branch=branch), status), PEER, "udp", now)
        elif op == "send_req" and method != "ACK":
            with contextlib.suppress(ValueError):  # that branch may still be in use
                layer.send_request(request(method, branch=branch), PEER, transport, now)
        elif op == "send_resp":
            target = request(method, branch=branch)
            if method != "ACK":
                layer.send_response(make_response(target, status, to_tag="t"), now)
        else:
            now += dt
            layer.handle_timer(now)
        layer.pop_events()
    # Answer whatever the TU still owes, let every client get a final, and let time pass.
    for txn in list(layer._servers.values()):
        if txn.state in ("trying", "proceeding"):
            layer.send_response(make_response(txn.request, 500, to_tag="t"), now)
    for client in list(layer._clients.values()):
        if client.state == "proceeding" and client.is_invite:
            layer.receive(make_response(client.request, 487, to_tag="t"), PEER, "udp", now)
    layer.handle_timer(now + 1000.0)
    assert len(layer) == 0
    assert layer.next_deadline() is None
