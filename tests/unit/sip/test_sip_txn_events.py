"""Transmit and RequestReceived fill their fields themselves: still frozen dataclasses."""

from __future__ import annotations

import dataclasses

import pytest

from pypbx.sip.message import Request, SipURI
from pypbx.sip.transaction import RequestReceived, Transmit

REQUEST = Request("OPTIONS", SipURI(host="example.com"))


def test_transmit_is_the_dataclass_it_was() -> None:
    sent = Transmit(REQUEST, ("192.0.2.1", 5060), "udp")
    assert sent.data is None
    assert sent == Transmit(REQUEST, ("192.0.2.1", 5060), "udp", b"bytes")  # data: no compare
    assert repr(sent) == f"Transmit(message={REQUEST!r}, dest=('192.0.2.1', 5060), transport='udp')"
    assert dataclasses.replace(sent, transport="tcp").transport == "tcp"
    assert [f.name for f in dataclasses.fields(sent)] == ["message", "dest", "transport", "data"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sent.data = b"x"  # type: ignore[misc]


def test_request_received_is_the_dataclass_it_was() -> None:
    event = RequestReceived(REQUEST, ("192.0.2.1", 5060), "udp", None)
    assert event == RequestReceived(REQUEST, ("192.0.2.1", 5060), "udp", None)
    assert event != RequestReceived(REQUEST, ("192.0.2.1", 5061), "udp", None)
    assert dataclasses.astuple(event)[1:] == (("192.0.2.1", 5060), "udp", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.transport = "tcp"  # type: ignore[misc]
