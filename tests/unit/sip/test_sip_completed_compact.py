"""Completed non-INVITE server transactions over UDP are kept as bytes until Timer J.

What must not change (RFC 3261 §17.2.2): a retransmitted request gets the same final
response again while the transaction is Completed, a late TU response is dropped, and the
transaction ends 64*T1 after its final response; over TCP it ends at once.
"""

from __future__ import annotations

import gc
import types

import pytest

from pypbx.sip.message import Request, make_response, parse_message
from pypbx.sip.transaction import (
    RequestReceived,
    Retransmit,
    ServerTransaction,
    TransactionLayer,
    TransactionTerminated,
    Transmit,
)

PHONE = ("198.51.100.7", 40123)  # where the NATed phone's datagrams really come from


def register(branch: str = "z9hG4bK-reg-1", via_host: str = "10.0.0.5:5060") -> Request:
    text = (
        "REGISTER sip:pbx.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host};branch={branch};rport\r\n"
        "From: <sip:1000@pbx.test>;tag=f1\r\n"
        "To: <sip:1000@pbx.test>\r\n"
        "Call-ID: reg-call-1\r\n"
        "CSeq: 7 REGISTER\r\n"
        "Contact: <sip:1000@10.0.0.5:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def start(layer: TransactionLayer, now: float, branch: str = "z9hG4bK-reg-1") -> RequestReceived:
    layer.receive(register(branch), PHONE, "udp", now)
    [event] = layer.pop_events()
    assert isinstance(event, RequestReceived) and event.transaction is not None
    return event


def test_final_response_sent_once_serialised_and_to_the_nat_address() -> None:
    layer = TransactionLayer()
    event = start(layer, 0.0)
    ok = make_response(event.request, 200, to_tag="t1")
    layer.send_response(ok, 0.0)
    [sent] = layer.pop_events()
    assert isinstance(sent, Transmit) and sent.message is ok
    assert sent.dest == PHONE  # rport + received (RFC 3581)
    assert sent.data == ok.serialize()
    assert b";rport=40123;received=198.51.100.7" in ok.serialize()
    layer.receive(register(), PHONE, "udp", 5.0)
    assert layer.pop_events() == [Retransmit(ok.serialize(), PHONE, "udp")]


def _reachable(root: object) -> set[int]:
    """Ids of the objects ``root`` holds, directly or not (classes, modules and functions aside:
    they lead to every global). Why not weak references: compiled classes take none."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(obj))
        todo.extend(gc.get_referents(obj))
    return seen


def test_layer_keeps_no_objects_of_a_completed_transaction() -> None:
    layer = TransactionLayer()
    event = start(layer, 0.0)
    txn = event.transaction
    assert txn is not None
    ok = make_response(event.request, 200, to_tag="t1")
    assert id(txn) in _reachable(layer)  # while it runs, the layer holds it
    layer.send_response(ok, 0.0)
    layer.pop_events()
    assert txn.state == "completed" and txn.last_response is ok  # the TU still reads these
    assert len(layer) == 1
    held = _reachable(layer)
    assert not {id(txn), id(event.request), id(ok)} & held  # the TU's are the last references
    gc.collect()
    gc.collect()
    for key, entry in layer._completed.items():
        assert not gc.is_tracked(key) and not gc.is_tracked(entry)


def test_a_completed_transaction_is_a_string_and_a_flat_tuple_of_atoms() -> None:
    """What a storm keeps for 32 s each: as few objects as can be (see _Completed)."""
    layer = TransactionLayer()
    transport = "udp"
    layer.receive(register(), PHONE, transport, 0.0)
    [event] = layer.pop_events()
    assert isinstance(event, RequestReceived)
    layer.send_response(make_response(event.request, 401, to_tag="t1"), 0.0)
    layer.pop_events()
    [(key, entry)] = layer._completed.items()
    assert key == "z9hG4bK-reg-1\n10.0.0.5:5060\nREGISTER\n\n0"
    deadline, data, host, port, sent_over = entry
    assert (deadline, host, port) == (32.0, PHONE[0], PHONE[1])
    assert data.startswith(b"SIP/2.0 401 ")
    assert sent_over is transport  # the caller's string, not an equal copy
    assert list(layer._expiry) == [32.0] and list(layer._expiry_keys) == [key]


def test_timer_j_ends_it_silently_at_64_t1() -> None:
    layer = TransactionLayer()
    event = start(layer, 10.0)
    layer.send_response(make_response(event.request, 200, to_tag="t1"), 10.0)
    layer.pop_events()
    assert layer.next_deadline() == 42.0
    layer.handle_timer(41.99)
    assert len(layer) == 1
    layer.handle_timer(42.0)
    assert len(layer) == 0 and layer.next_deadline() is None
    assert layer.pop_events() == []  # no TransactionTerminated: the layer held no object
    again = start(layer, 43.0)  # same branch after Timer J: a new transaction
    assert again.transaction is not None and again.transaction.state == "trying"


def test_deadlines_of_compacted_and_heap_timers_interleave() -> None:
    layer = TransactionLayer()
    event = start(layer, 0.0)
    layer.send_response(make_response(event.request, 200, to_tag="t1"), 0.0)
    invite = register("z9hG4bK-inv-1")
    invite.method = "INVITE"
    invite.headers.set("CSeq", "8 INVITE")
    layer.receive(invite, PHONE, "udp", 1.0)
    layer.pop_events()
    layer.send_response(make_response(invite, 486, to_tag="t2"), 1.0)
    layer.pop_events()
    assert len(layer._servers) == 1  # INVITE transactions keep their object (Timers G, H)
    assert layer.next_deadline() == pytest.approx(1.5)  # Timer G first
    layer.handle_timer(1000.0)
    assert len(layer) == 0 and layer.next_deadline() is None


def test_a_clock_going_back_neither_raises_nor_leaks() -> None:
    layer = TransactionLayer()
    for index, now in enumerate((50.0, 10.0, 30.0)):
        event = start(layer, now, branch=f"z9hG4bK-reg-{index}")
        layer.send_response(make_response(event.request, 200, to_tag="t"), now)
        layer.pop_events()
    assert len(layer) == 3
    layer.handle_timer(82.0)  # 50 + 32: the first one queued is due, so all before it go
    assert len(layer) == 0


def test_late_tu_response_after_completion_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    layer = TransactionLayer()
    event = start(layer, 0.0)
    layer.send_response(make_response(event.request, 200, to_tag="t1"), 0.0)
    layer.pop_events()
    layer.send_response(make_response(event.request, 500, to_tag="t1"), 1.0)
    assert layer.pop_events() == []
    assert "dropping 500 sent after the final response" in caplog.text


def test_over_tcp_the_transaction_still_ends_on_its_final() -> None:
    layer = TransactionLayer()
    request = register()
    request.headers.set("Via", "SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bK-tcp")
    layer.receive(request, PHONE, "tcp", 0.0)
    [event] = layer.pop_events()
    txn = event.transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    ok = make_response(request, 200, to_tag="t1")
    layer.send_response(ok, 0.0)
    assert layer.pop_events() == [Transmit(ok, PHONE, "tcp"), TransactionTerminated(txn)]
    assert len(layer) == 0 and not layer._completed
