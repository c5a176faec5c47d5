"""pypbx.pbx.alarm without a network: request checks, the API-extension check, the tap that
hears what the PBX sends an extension, and a whole exchange on a stand-in call (a panel's
audio in, RFC 4733 keys from the far leg only, the call ending half-way)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from pypbx.media.bridge import CodecSpec
from pypbx.media.contact_id import FRAME, ContactIdMessage, ContactIdReceiver, ContactIdSender
from pypbx.media.dtmf import DtmfDigit, encode_event
from pypbx.media.g711 import ulaw_encode
from pypbx.media.player import Pcm
from pypbx.media.rtp import RTP_HEADER
from pypbx.pbx.agent import AgentCalls
from pypbx.pbx.alarm import AlarmRequest, AlarmRequestError, Alarms, _Heard, _MachineSource
from pypbx.pbx.control import ApiExtensionError
from pypbx.store.records import ExtensionRecord

PCMU = CodecSpec(0, "PCMU", 101)
FIRE = ContactIdMessage.build(account="1234", event_code="110", partition="1", zone="10")


def request(**change: Any) -> AlarmRequest:
    fields: dict[str, Any] = {
        "phone_number": "2000",
        "account_number": "1234",
        "event_code": "110",
        "partition_number": "1",
        "zone_number": "10",
        "api_extension": "9002",
        "result_url": "http://app.example/alarm",
    }
    return AlarmRequest(**(fields | change))


class FakeStore:
    def __init__(self, *records: ExtensionRecord) -> None:
        self.records = {record.id: record for record in records}

    async def get_extension(self, extension_id: str) -> ExtensionRecord | None:
        return self.records.get(extension_id)


def alarms(store: FakeStore, started: list[Coroutine[Any, Any, None]]) -> Alarms:
    b2bua = SimpleNamespace(store=store, background=started.append)
    return Alarms(b2bua, SimpleNamespace(), SimpleNamespace(), agent_calls=AgentCalls())  # type: ignore[arg-type]


STORE = FakeStore(
    ExtensionRecord("9002", "API"),
    ExtensionRecord("9003", "API", enabled=False),
    ExtensionRecord("9004", "API", settings={"allowed_users": ["alice"]}),
    ExtensionRecord("2000", "SIP"),
)


@pytest.mark.parametrize(
    ("change", "param", "reason"),
    [
        ({"api_extension": None}, "ApiExtension", "no API extension to call from"),
        ({"account_number": "123"}, "AccountNumber", "must be exactly 4 digits"),
        ({"event_code": "x"}, "EventCode", "must be decimal digits"),
        ({"partition_number": "123"}, "PartitionNumber", "must be at most 2 digits"),
        ({"zone_number": "1234"}, "ZoneNumber", "must be at most 3 digits"),
        (
            {"event_qualifier": "Old"},
            "EventQualifier",
            "must be NewEvent, NewRestore or StatusReport",
        ),
    ],
)
async def test_send_names_the_bad_parameter(
    change: dict[str, Any], param: str, reason: str
) -> None:
    started: list[Coroutine[Any, Any, None]] = []
    with pytest.raises(AlarmRequestError) as info:
        await alarms(STORE, started).send(request(**change))
    assert (info.value.param, info.value.reason) == (param, reason)
    assert started == []


@pytest.mark.parametrize(
    ("extension", "username"),
    [("9999", None), ("2000", None), ("9003", None), ("9004", "bob")],
    ids=["unknown", "not-api", "disabled", "user-not-allowed"],
)
async def test_send_refuses_an_extension_that_cannot_call(
    extension: str, username: str | None
) -> None:
    started: list[Coroutine[Any, Any, None]] = []
    with pytest.raises(ApiExtensionError) as info:
        await alarms(STORE, started).send(request(api_extension=extension), username=username)
    assert str(info.value) == extension
    assert started == []


async def test_send_starts_in_the_background_and_returns() -> None:
    started: list[Coroutine[Any, Any, None]] = []
    await alarms(STORE, started).send(request(api_extension="9004"), username="alice")
    await alarms(STORE, started).send(request())
    assert len(started) == 2
    for coro in started:
        coro.close()  # not run: this test has no agent to call with


# --- the tap --------------------------------------------------------------------------------


def packet(payload: bytes, payload_type: int, *, sequence: int = 1, marker: bool = False) -> bytes:
    return (
        RTP_HEADER.pack(0x80, payload_type | (0x80 * marker), sequence, 160 * sequence, 7) + payload
    )


def test_heard_decodes_what_is_sent_to_the_extension_only() -> None:
    got: list[Pcm] = []
    heard = _Heard(PCMU, got.append)
    tone = (8000 * np.sin(np.arange(FRAME) / 3)).astype(np.int16)
    endpoint = cast(Any, None)
    heard.on_rtp(endpoint, packet(ulaw_encode(tone), 0), inbound=True)  # from the extension
    assert got == []
    heard.on_rtp(endpoint, packet(encode_event(1, False, 10, 160), 101), inbound=False)
    assert got == []  # telephone-events: the far leg's digit listener has them
    heard.on_rtp(endpoint, packet(ulaw_encode(tone), 0), inbound=False)
    assert len(got) == 1 and np.abs(got[0].astype(int) - tone).max() < 300


def test_machine_source_hands_out_frames_until_done() -> None:
    receiver = ContactIdReceiver(0.0, settle=0.0, listen_timeout=0.0, handshakes=1)
    done: list[bool] = []
    now = [0.0]
    source = _MachineSource(receiver, lambda: now[0], lambda: done.append(True))
    frames = []
    while (frame := source.next_frame()) is not None:
        frames.append(frame)
        now[0] += 0.02
    assert len(frames) == 16  # the handshake (300 ms), then nothing heard: over
    assert receiver.reason == "no message"
    assert done


# --- an exchange on a stand-in call ---------------------------------------------------------


@dataclass(eq=False)
class FakeEndpoint:
    taps: list[Any] = field(default_factory=list)

    def add_tap(self, tap: Any) -> None:
        self.taps.append(tap)

    def remove_tap(self, tap: Any) -> None:
        self.taps.remove(tap)


@dataclass(eq=False)
class FakeOutput:
    source: Any = None

    def play(self, source: Any) -> None:
        self.source = source

    def stop_playback(self) -> None:
        self.source = None


@dataclass(eq=False)
class FakeLeg:
    endpoint: FakeEndpoint | None = field(default_factory=FakeEndpoint)
    codec: CodecSpec = PCMU


@dataclass(eq=False)
class FakeCall:
    caller: FakeLeg = field(default_factory=FakeLeg)  # the far phone
    callee: FakeLeg = field(default_factory=FakeLeg)  # the API extension's own leg
    is_over: bool = False

    def other(self, leg: FakeLeg) -> FakeLeg:
        return self.callee if leg is self.caller else self.caller


class FakeB2bua:
    def __init__(self) -> None:
        self.on_call_ended: list[Callable[[Any], None]] = []
        self.outputs: dict[int, FakeOutput] = {}
        self.applied = 0

    def leg_output(self, leg: FakeLeg) -> FakeOutput:
        return self.outputs.setdefault(id(leg), FakeOutput())

    def apply_media(self, call: FakeCall) -> None:
        self.applied += 1

    def end(self, call: FakeCall) -> None:
        call.is_over = True
        for leg in (call.caller, call.callee):
            leg.endpoint = None  # released, as the B2BUA does
        for listener in list(self.on_call_ended):
            listener(call)


async def test_receive_exchange_hears_the_own_leg_and_keys_from_the_far_leg() -> None:
    b2bua, call = FakeB2bua(), FakeCall()
    media = SimpleNamespace(digit_listeners=[])
    service = Alarms(b2bua, media, SimpleNamespace(), agent_calls=AgentCalls())  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    receiver = ContactIdReceiver(loop.time(), settle=0.0)
    own = call.callee.endpoint
    assert own is not None
    task = asyncio.ensure_future(
        service._exchange(call, call.callee, receiver, receiver.receive_digit)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0)
    output = b2bua.outputs[id(call.caller)]  # it speaks to the far phone
    assert output.source is not None and len(own.taps) == 1
    while receiver.state != "listen":
        assert output.source.next_frame() is not None
        await asyncio.sleep(0.02)
    (listener,) = media.digit_listeners
    # keys pressed on the extension's own leg, or found in-band by the leg's detector, do not
    # count; RFC 4733 keys from the far phone do
    listener(call, call.callee, DtmfDigit("1", "rfc4733", 0.0))
    listener(call, call.caller, DtmfDigit("1", "inband", 0.0))
    listener(object(), call.caller, DtmfDigit("1", "rfc4733", 0.0))
    assert receiver.keys == ""
    for key in FIRE.dtmf:
        listener(call, call.caller, DtmfDigit(key, "rfc4733", 0.0))
    assert receiver.state == "kissoff"
    while not task.done():
        if output.source is not None:
            output.source.next_frame()
        await asyncio.sleep(0.005)
    assert receiver.message == FIRE
    assert media.digit_listeners == [] and b2bua.on_call_ended == []
    assert own.taps == []


async def test_send_exchange_stops_when_the_call_ends() -> None:
    b2bua, call = FakeB2bua(), FakeCall()
    media = SimpleNamespace(digit_listeners=[])
    service = Alarms(b2bua, media, SimpleNamespace(), agent_calls=AgentCalls())  # type: ignore[arg-type]
    sender = ContactIdSender(FIRE, asyncio.get_running_loop().time())
    own = call.caller.endpoint
    task = asyncio.ensure_future(service._exchange(call, call.caller, sender))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert not task.done() and own is not None and len(own.taps) == 1
    b2bua.end(call)
    await asyncio.wait_for(task, 1.0)
    assert own.taps == []
    assert sender.result is not None and sender.result.reason == "call ended"
    assert b2bua.outputs[id(call.callee)].source is None  # its audio is taken off the line
    assert media.digit_listeners == [] and b2bua.on_call_ended == []
