"""The relay worker process, driven through real sockets on 127.0.0.1.

Two UDP sockets play the phones; pypbx's MediaManager bridges them and hands the bridge to a
real worker process. What the phones receive is checked packet by packet: nothing lost at
the hand-over or the hand-back, one continuous sequence and timestamp numbering toward each
phone, key presses still reaching the taps, counters and last-packet times carried back.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from pypbx.media.bridge import CodecSpec
from pypbx.media.endpoint import MediaManager, RtpEndpoint
from pypbx.media.inbound import InboundAudio
from pypbx.media.relay_offload import RelayOffloader
from pypbx.media.rtp import RtpPacket

PCMU = CodecSpec(0, "PCMU", 101)
PCMA = CodecSpec(8, "PCMA", 101)
PAYLOADS = {0: "PCMU", 8: "PCMA", 101: "telephone-event"}
_BASE = 33100 + 40 * (os.getpid() % 20)  # each xdist worker (and rerun) its own ports


class Phone:
    """A UDP socket sending numbered packets and collecting what comes back."""

    def __init__(self, ssrc: int, payload_type: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence = 100
        self.timestamp = 8000
        self.received: list[RtpPacket] = []
        self.target: tuple[str, int] = ("127.0.0.1", 0)

    def send(self, count: int = 1, *, payload_type: int | None = None, body: bytes = b"") -> None:
        for _ in range(count):
            pt = self.payload_type if payload_type is None else payload_type
            payload = body or bytes([self.sequence & 0xFF]) * 160
            packet = RtpPacket(pt, self.sequence, self.timestamp, self.ssrc, payload=payload)
            self.sock.sendto(packet.serialize(), self.target)
            self.sequence += 1
            self.timestamp += 160

    def drain(self) -> list[RtpPacket]:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return self.received
            self.received.append(RtpPacket.parse(data))


@dataclass
class Call:
    media: MediaManager
    offloader: RelayOffloader
    a: RtpEndpoint
    b: RtpEndpoint
    phone_a: Phone
    phone_b: Phone


async def settle(*phones: Phone, rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0.01)
        for phone in phones:
            phone.drain()


async def open_call(low: int, high: int, b_codec: CodecSpec = PCMU, *, worker: bool = True) -> Call:
    """Two phones bridged through a MediaManager whose offloader has its worker ready (or,
    with `worker=False`, not started yet)."""
    media = MediaManager("127.0.0.1", low, high)
    offloader = RelayOffloader(media, after=0.0, period=3600)
    media.offloader = offloader
    await offloader.start()
    assert not worker or await offloader.ensure_worker()
    phone_a, phone_b = Phone(0xAAAA0001), Phone(0xBBBB0002, payload_type=b_codec.payload_type)
    a = await media.create_endpoint()
    b = await media.create_endpoint()
    a.set_remote(phone_a.address, payload_map=PAYLOADS)
    b.set_remote(phone_b.address, payload_map=PAYLOADS)
    phone_a.target = ("127.0.0.1", a.local_port)
    phone_b.target = ("127.0.0.1", b.local_port)
    media.bridge(a, b, PCMU, b_codec)
    return Call(media, offloader, a, b, phone_a, phone_b)


async def close_call(call: Call) -> None:
    await call.media.close()
    for phone in (call.phone_a, call.phone_b):
        phone.sock.close()


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    opened = await open_call(_BASE, _BASE + 19)
    yield opened
    await close_call(opened)


async def talk(call: Call, count: int) -> None:
    for _ in range(count):
        call.phone_a.send()
        call.phone_b.send()
        await asyncio.sleep(0.002)
    await settle(call.phone_a, call.phone_b)


def connected_to(endpoint: RtpEndpoint) -> object:
    """The address the endpoint's socket is connected to, None when it takes anyone's."""
    assert endpoint.rtp_socket is not None
    try:
        return endpoint.rtp_socket.getpeername()
    except OSError:
        return None


def continuous(packets: list[RtpPacket]) -> None:
    """One SSRC, sequence +1 each, timestamp +160 each."""
    assert len({p.ssrc for p in packets}) == 1
    for before, after in itertools.pairwise(packets):
        assert (after.sequence - before.sequence) & 0xFFFF == 1, (before, after)
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == 160, (before, after)


async def test_hand_over_and_back_keeps_every_packet_and_the_numbering(call: Call) -> None:
    await talk(call, 10)  # latched, relayed by the loop
    assert call.offloader.offload(call.media.bridge_of(call.a), time.monotonic())  # type: ignore[arg-type]
    assert call.a.offload is not None and call.offloader.offloaded == 1
    await talk(call, 30)  # relayed by the worker
    # the worker connects each socket to its phone: the kernel keeps other senders out
    assert connected_to(call.a) == call.phone_a.address
    assert connected_to(call.b) == call.phone_b.address
    call.a.reclaim()
    assert call.a.offload is None and call.b.offload is None
    assert connected_to(call.a) is None and connected_to(call.b) is None  # as before
    assert call.a.counters.packets_in == 40 and call.b.counters.packets_in == 40
    assert call.a.counters.packets_out == 40  # what B sent, relayed to A
    await talk(call, 10)  # the loop again
    for phone, far in ((call.phone_a, call.phone_b), (call.phone_b, call.phone_a)):
        got = phone.drain()
        assert len(got) == 50
        continuous(got)
        assert [p.payload[0] for p in got] == [s & 0xFF for s in range(100, 150)]
        assert got[0].ssrc != far.ssrc  # the PBX's own stream toward each phone


async def test_a_player_after_the_hand_back_continues_the_stream(call: Call) -> None:
    await talk(call, 5)
    bridge = call.media.bridge_of(call.a)
    assert bridge is not None and call.offloader.offload(bridge, time.monotonic())
    await talk(call, 20)
    bridge.toward(call.a).paused = True  # hold: takes the bridge back first
    assert call.a.offload is None
    call.a.send_media(b"\xff" * 160, 0, 160, writer=object())
    await settle(call.phone_a)
    got = call.phone_a.drain()
    assert len(got) == 26
    # the prompt's frame follows the relayed ones: next sequence, a marker, later timestamp
    assert (got[-1].sequence - got[-2].sequence) & 0xFFFF == 1
    assert got[-1].marker and got[-1].timestamp != got[-2].timestamp


async def test_key_presses_reach_the_taps_while_offloaded(call: Call) -> None:
    seen: list[bytes] = []

    class EventTap:
        def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
            if data[1] & 0x7F == 101:
                seen.append(bytes(data[12:16]))

        def payload_types_needed(self) -> frozenset[int]:
            return frozenset((101,))

    call.a.add_tap(EventTap(), outbound=False)
    await talk(call, 5)
    bridge = call.media.bridge_of(call.a)
    assert bridge is not None and call.offloader.offload(bridge, time.monotonic())
    event = struct.pack("!BBH", 5, 10, 160)  # key 5
    call.phone_a.send(3, payload_type=101, body=event)
    await settle(call.phone_a, call.phone_b)
    assert call.a.offload is not None  # still offloaded: events do not need the loop
    assert seen == [event] * 3
    assert [p.payload_type for p in call.phone_b.drain()][-3:] == [101] * 3  # and relayed


async def test_taps_that_need_audio_keep_the_bridge_on_the_loop(call: Call) -> None:
    class AudioTap:
        def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
            pass

    await talk(call, 5)
    call.b.add_tap(AudioTap(), outbound=False)
    bridge = call.media.bridge_of(call.a)
    assert bridge is not None
    assert not call.offloader.offload(bridge, time.monotonic())
    call.b.remove_tap(call.b._in_taps[0])
    assert call.offloader.offload(bridge, time.monotonic())
    call.b.add_tap(AudioTap(), inbound=False)  # adding a tap takes the bridge back
    assert call.b.offload is None


async def test_statistics_keep_the_rtp_watchdog_informed(call: Call) -> None:
    await talk(call, 5)
    bridge = call.media.bridge_of(call.a)
    assert bridge is not None and call.offloader.offload(bridge, time.monotonic())
    before = call.a.received_at
    await asyncio.sleep(0.1)
    await talk(call, 5)
    deadline = time.monotonic() + 3
    while call.a.received_at == before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert call.a.received_at > before
    assert call.a.offload is not None
    assert call.a.counters.packets_in == 10


async def test_laws_are_translated_by_the_worker_too() -> None:
    call = await open_call(_BASE + 20, _BASE + 39, b_codec=PCMA)
    try:
        await talk(call, 2)
        bridge = call.media.bridge_of(call.a)
        assert bridge is not None and call.offloader.offload(bridge, time.monotonic())
        call.phone_a.send(1, body=b"\x00" * 160)  # u-law 0x00 is a-law 0x2a
        await settle(call.phone_b)
        last = call.phone_b.drain()[-1]
        assert last.payload_type == 8 and last.payload == b"\x2a" * 160
    finally:
        await close_call(call)


async def test_a_dead_worker_hands_every_call_back_to_the_loop(call: Call) -> None:
    await talk(call, 5)
    bridge = call.media.bridge_of(call.a)
    assert bridge is not None and call.offloader.offload(bridge, time.monotonic())
    await talk(call, 5)
    assert connected_to(call.a) == call.phone_a.address  # by the worker
    process = call.offloader._process
    assert process is not None
    process.kill()
    deadline = time.monotonic() + 3
    while call.a.offload is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert call.a.offload is None and not call.offloader.running
    # the dead worker's connect is undone: the loop's latch decides who is heard
    assert connected_to(call.a) is None and connected_to(call.b) is None
    await talk(call, 5)
    got = call.phone_b.drain()
    assert len(got) == 15  # the loop relays again (only the worker's counters were lost)


async def test_a_decoded_audio_consumer_takes_the_bridge_back(call: Call) -> None:
    """Recording or prompt mixing adds a sink to the phone's InboundAudio: that needs every
    audio packet, so the bridge comes back to the loop before the sink is in place."""
    digits: list[object] = []
    inbound = InboundAudio(PCMU, digits.append, inband=False)
    call.a.add_tap(inbound, outbound=False)
    inbound.sinks.on_added = call.a.reclaim
    await talk(call, 5)
    bridge = call.media.bridge_of(call.a)
    assert bridge is not None and call.offloader.offload(bridge, time.monotonic())
    heard: list[int] = []
    inbound.sinks["recorder"] = lambda pcm: heard.append(len(pcm))
    assert call.a.offload is None
    await talk(call, 5)
    assert heard == [160] * 5  # every frame decoded again, from the loop
    assert not call.offloader.offload(bridge, time.monotonic())  # not while it is needed
    del inbound.sinks["recorder"]
    assert call.offloader.offload(bridge, time.monotonic())


async def test_a_hand_back_works_with_descriptors_past_1024() -> None:
    """With thousands of RTP sockets the control socket's descriptor passes FD_SETSIZE,
    where select() fails: the blocking wait for the worker's answer must not use it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(1050)]
    try:
        call = await open_call(_BASE + 20, _BASE + 39)
        try:
            assert call.a.rtp_socket is not None and call.a.rtp_socket.fileno() > 1024
            await talk(call, 2)
            bridge = call.media.bridge_of(call.a)
            assert bridge is not None and call.offloader.offload(bridge, time.monotonic())
            call.a.reclaim()
            assert call.a.offload is None and call.offloader.running
        finally:
            await close_call(call)
    finally:
        for sock in filler:
            sock.close()


async def test_the_worker_starts_only_for_a_call_it_could_relay() -> None:
    call = await open_call(_BASE + 20, _BASE + 39, worker=False)
    try:
        assert call.offloader.sweep(time.monotonic()) == 0
        assert not call.offloader.running  # no RTP yet: nothing a worker could do
        await talk(call, 2)
        call.offloader.sweep(time.monotonic())
        assert call.offloader.running
    finally:
        await close_call(call)
