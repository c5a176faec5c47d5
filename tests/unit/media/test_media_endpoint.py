"""RtpEndpoint and MediaManager over real UDP on 127.0.0.1; plain sockets play the phones."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pypbx.media.endpoint import (
    CodecSpec,
    MediaManager,
    PortsExhaustedError,
    RtpEndpoint,
)
from pypbx.media.rtp import RtpPacket

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # reference for transcoding, tests only

LOW, HIGH = 31000, 31799  # the managers' range; 31800-31999 is for phones and special cases
PCMU = CodecSpec(0, "PCMU", 101)
PCMA = CodecSpec(8, "PCMA", 101)
PHONE_A_SSRC = 0x0A0A0A0A
PHONE_B_SSRC = 0x0B0B0B0B


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Phone:
    """A UDP socket standing in for a phone's RTP (or RTCP) port."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", port))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    def send(self, endpoint: RtpEndpoint, data: bytes, *, rtcp: bool = False) -> None:
        self.sock.sendto(data, ("127.0.0.1", endpoint.local_port + (1 if rtcp else 0)))

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 4096), timeout)
        return data, addr

    async def packet(self) -> RtpPacket:
        return RtpPacket.parse((await self.recv())[0])

    async def nothing(self, wait: float = 0.2) -> bool:
        try:
            await self.recv(wait)
        except TimeoutError:
            return True
        return False


def rtp(seq: int, payload: bytes = bytes(160), **kw: Any) -> bytes:
    fields: dict[str, Any] = {"payload_type": 0, "ssrc": PHONE_A_SSRC, "timestamp": seq * 160}
    fields.update(kw)
    return RtpPacket(sequence=seq, payload=payload, **fields).serialize()


def rr(sender: int, about: int) -> bytes:
    return struct.pack("!BBHI", 0x81, 201, 7, sender) + struct.pack("!6I", about, 0, 0, 0, 0, 0)


@pytest.fixture
def phones() -> Iterator[list[Phone]]:
    made: list[Phone] = []
    yield made
    for phone in made:
        phone.sock.close()


def phone(phones: list[Phone], port: int = 0) -> Phone:
    made = Phone(port)
    phones.append(made)
    return made


def phone_pair(phones: list[Phone]) -> tuple[Phone, Phone]:
    """RTP + RTCP sockets on an even/odd port pair, as a real phone has."""
    for port in range(31900, 31999, 2):
        try:
            rtp_phone = Phone(port)
        except OSError:
            continue
        try:
            rtcp_phone = Phone(port + 1)
        except OSError:
            rtp_phone.sock.close()
            continue
        phones.extend((rtp_phone, rtcp_phone))
        return rtp_phone, rtcp_phone
    raise RuntimeError("no free phone port pair")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def manager(clock: Clock) -> AsyncIterator[MediaManager]:
    media = MediaManager("127.0.0.1", LOW, HIGH, clock=clock)
    yield media
    await media.close()
    assert media.endpoint_count == 0
    assert media.ports_in_use == 0


async def call(
    manager: MediaManager,
    phones: list[Phone],
    a_codec: CodecSpec = PCMU,
    b_codec: CodecSpec = PCMU,
) -> tuple[RtpEndpoint, RtpEndpoint, Phone, Phone]:
    a, b = await manager.create_endpoint(), await manager.create_endpoint()
    phone_a, phone_b = phone(phones), phone(phones)
    a.set_remote(phone_a.address)
    b.set_remote(phone_b.address)
    manager.bridge(a, b, a_codec, b_codec)
    return a, b, phone_a, phone_b


async def test_relay_both_ways(manager: MediaManager, phones: list[Phone]) -> None:
    a, b, phone_a, phone_b = await call(manager, phones, PCMU, CodecSpec(0, "PCMU", 96))
    assert a.local_address == "127.0.0.1"
    assert a.local_port % 2 == 0 and LOW <= a.local_port < HIGH
    assert b.local_port != a.local_port
    for seq in (10, 11):
        phone_a.send(a, rtp(seq, bytes([seq]) * 160))
    first, source = await phone_b.recv()
    assert source == ("127.0.0.1", b.local_port)  # symmetric: from the port in our SDP
    second = RtpPacket.parse((await phone_b.recv())[0])
    packet = RtpPacket.parse(first)
    assert (packet.payload_type, packet.ssrc, packet.payload) == (
        0,
        b.output.ssrc,
        bytes([10]) * 160,
    )
    assert packet.marker and not second.marker
    assert second.sequence == (packet.sequence + 1) & 0xFFFF
    assert second.timestamp == (packet.timestamp + 160) & 0xFFFFFFFF

    phone_b.send(b, rtp(5, b"hello", ssrc=PHONE_B_SSRC))
    back, source = await phone_a.recv()
    assert source == ("127.0.0.1", a.local_port)
    packet = RtpPacket.parse(back)
    assert (packet.ssrc, packet.payload) == (a.output.ssrc, b"hello")
    assert (a.counters.packets_in, a.counters.packets_out) == (2, 1)
    assert (b.counters.packets_in, b.counters.packets_out) == (1, 2)
    assert b.counters.bytes_out == 2 * (12 + 160)


async def test_pcmu_to_pcma_transcoding(manager: MediaManager, phones: list[Phone]) -> None:
    a, b, phone_a, phone_b = await call(manager, phones, PCMU, PCMA)
    tone = audioop.lin2ulaw(
        struct.pack("<160h", *[(i * 397) % 30000 - 15000 for i in range(160)]), 2
    )
    phone_a.send(a, rtp(1, tone))
    packet = await phone_b.packet()
    assert packet.payload_type == 8
    assert packet.payload == audioop.lin2alaw(audioop.ulaw2lin(tone, 2), 2)
    alaw = bytes(range(256))
    phone_b.send(b, rtp(1, alaw, payload_type=8, ssrc=PHONE_B_SSRC))
    packet = await phone_a.packet()
    assert packet.payload_type == 0
    assert packet.payload == audioop.lin2ulaw(audioop.alaw2lin(alaw, 2), 2)


async def test_telephone_event_passes(manager: MediaManager, phones: list[Phone]) -> None:
    a, _b, phone_a, phone_b = await call(manager, phones, PCMU, CodecSpec(8, "PCMA", 96))
    phone_a.send(a, rtp(1))
    await phone_b.recv()
    for seq, payload in (
        (2, b"\x01\x0a\x00\xa0"),
        (3, b"\x01\x0a\x01\x40"),
        (4, b"\x01\x8a\x01\xe0"),
    ):
        phone_a.send(a, rtp(seq, payload, payload_type=101, timestamp=320, marker=seq == 2))
    events = [await phone_b.packet() for _ in range(3)]
    assert [e.payload_type for e in events] == [96, 96, 96]
    assert [e.payload for e in events] == [
        b"\x01\x0a\x00\xa0",
        b"\x01\x0a\x01\x40",
        b"\x01\x8a\x01\xe0",
    ]
    assert [e.marker for e in events] == [True, False, False]
    assert len({e.timestamp for e in events}) == 1


async def test_latching_to_real_source(
    manager: MediaManager, phones: list[Phone], clock: Clock
) -> None:
    a, b, sdp_a, phone_b = await call(manager, phones)
    natted_a = phone(phones)  # where phone A's packets really come from
    phone_b.send(b, rtp(1, ssrc=PHONE_B_SSRC))
    await sdp_a.recv()  # before A talks: to its SDP address
    natted_a.send(a, rtp(1))
    await phone_b.recv()
    assert a.remote == sdp_a.address
    assert a.target == natted_a.address
    phone_b.send(b, rtp(2, ssrc=PHONE_B_SSRC))
    await natted_a.recv()
    assert await sdp_a.nothing()


async def test_latch_resists_injection_until_silence(
    manager: MediaManager, phones: list[Phone], clock: Clock
) -> None:
    a, _b, phone_a, phone_b = await call(manager, phones)
    intruder = phone(phones)
    phone_a.send(a, rtp(1))
    await phone_b.recv()
    clock.now += 1.0
    intruder.send(a, rtp(50, b"evil"))
    assert await phone_b.nothing()
    assert a.counters.rejected == 1
    assert a.target == phone_a.address
    clock.now += 2.0  # phone A silent for 3 s > relatch_after (2 s): its NAT binding moved?
    intruder.send(a, rtp(51, b"moved"))
    assert (await phone_b.packet()).payload == b"moved"
    assert a.target == intruder.address
    phone_a.send(a, rtp(2, b"old"))
    assert await phone_b.nothing()


async def test_new_sdp_allows_relatch(manager: MediaManager, phones: list[Phone]) -> None:
    a, b, phone_a, phone_b = await call(manager, phones)
    moved = phone(phones)
    phone_a.send(a, rtp(1))
    await phone_b.recv()
    a.set_remote(phone_a.address)  # re-INVITE, same SDP: keep sending to the latched source ...
    assert a.target == phone_a.address
    moved.send(a, rtp(2, b"new"))  # ... but accept a new one at once
    assert (await phone_b.packet()).payload == b"new"
    assert a.target == moved.address
    other = phone(phones)
    a.set_remote(other.address)  # SDP with a new address: send there right away
    assert a.target == other.address
    phone_b.send(b, rtp(1, ssrc=PHONE_B_SSRC))
    await other.recv()


async def test_payload_map_filters_before_latching(
    manager: MediaManager, phones: list[Phone]
) -> None:
    a, _b, phone_a, phone_b = await call(manager, phones)
    a.set_remote(phone_a.address, payload_map={0: "PCMU", 101: "telephone-event"})
    assert a.payload_map == {0: "PCMU", 101: "telephone-event"}
    stranger = phone(phones)
    stranger.send(a, rtp(1, payload_type=18))
    stranger.send(a, b"\x00\x01\x00\x00" + bytes(16))  # STUN binding request: not RTP
    stranger.send(a, b"\x80")
    phone_a.send(a, rtp(2, b"ok"))
    assert (await phone_b.packet()).payload == b"ok"
    assert a.counters.rejected == 3
    assert a.target == phone_a.address


async def test_rtcp_forwarded_between_rtcp_ports(
    manager: MediaManager, phones: list[Phone]
) -> None:
    a, b = await manager.create_endpoint(), await manager.create_endpoint()
    (rtp_a, rtcp_a), (rtp_b, rtcp_b) = phone_pair(phones), phone_pair(phones)
    a.set_remote(rtp_a.address)
    b.set_remote(rtp_b.address)
    manager.bridge(a, b, PCMU, PCMU)
    rtp_a.send(a, rtp(1))
    await rtp_b.recv()
    rtp_b.send(b, rtp(1, ssrc=PHONE_B_SSRC))
    await rtp_a.recv()
    rtcp_a.send(a, rr(PHONE_A_SSRC, a.output.ssrc), rtcp=True)
    data, source = await rtcp_b.recv()
    assert source == ("127.0.0.1", b.local_port + 1)
    assert data == rr(b.output.ssrc, PHONE_B_SSRC)
    assert (a.counters.rtcp_in, b.counters.rtcp_out) == (1, 1)
    # RFC 5761 multiplexing: RTCP on the RTP port is recognised and relayed as RTCP
    rtp_b.send(b, rr(PHONE_B_SSRC, b.output.ssrc))
    data, source = await rtcp_a.recv()
    assert data == rr(a.output.ssrc, PHONE_A_SSRC)
    assert b.counters.packets_in == 1
    # and B, which multiplexes, gets RTCP back on its RTP port from our RTP port
    rtcp_a.send(a, rr(PHONE_A_SSRC, a.output.ssrc), rtcp=True)
    data, source = await rtp_b.recv()
    assert source == ("127.0.0.1", b.local_port)
    assert data == rr(b.output.ssrc, PHONE_B_SSRC)


async def test_counts_return_to_zero(manager: MediaManager, phones: list[Phone]) -> None:
    a, b, _phone_a, _phone_b = await call(manager, phones)
    c, d, _, _ = await call(manager, phones)
    assert (manager.endpoint_count, manager.bridge_count, manager.ports_in_use) == (4, 2, 4)
    bridge = manager.bridge_of(a)
    assert bridge is not None and bridge is manager.bridge_of(b)
    await manager.release(a)  # releasing a bridged endpoint unbridges it
    assert (manager.endpoint_count, manager.bridge_count) == (3, 1)
    assert a.closed and a.on_packet is None and b.on_packet is None
    await manager.release(a)  # twice is fine
    manager.unbridge(bridge)  # so is unbridging again
    await manager.release(b)
    manager.unbridge(manager.bridge_of(c))  # type: ignore[arg-type]
    assert (manager.endpoint_count, manager.bridge_count) == (2, 0)
    await manager.release(c)
    await manager.release(d)
    assert (manager.endpoint_count, manager.bridge_count, manager.ports_in_use) == (0, 0, 0)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", a.local_port))  # the socket really is closed
    probe.close()


async def test_unbridge_then_rebridge(manager: MediaManager, phones: list[Phone]) -> None:
    a, b, phone_a, phone_b = await call(manager, phones)
    c = await manager.create_endpoint()
    phone_c = phone(phones)
    c.set_remote(phone_c.address)
    phone_a.send(a, rtp(1))
    first = await phone_b.packet()
    manager.unbridge(manager.bridge_of(b))  # type: ignore[arg-type]
    phone_a.send(a, rtp(2))
    assert await phone_b.nothing()
    manager.bridge(c, b, PCMA, PCMU)  # transfer: B now talks to C
    phone_c.send(c, rtp(9, b"\xd5", payload_type=8, ssrc=0x0C0C0C0C))
    packet = await phone_b.packet()
    assert packet.ssrc == first.ssrc
    assert packet.sequence == (first.sequence + 1) & 0xFFFF
    assert packet.marker


async def test_bridge_errors(manager: MediaManager, phones: list[Phone]) -> None:
    a, _b, _, _ = await call(manager, phones)
    c = await manager.create_endpoint()
    with pytest.raises(ValueError, match="is already bridged"):
        manager.bridge(a, c, PCMU, PCMU)
    stranger = RtpEndpoint("127.0.0.1", 1)
    with pytest.raises(ValueError, match="is not an open endpoint of this manager"):
        manager.bridge(c, stranger, PCMU, PCMU)
    with pytest.raises(ValueError, match="cannot bridge an endpoint to itself"):
        manager.bridge(c, c, PCMU, PCMU)
    assert manager.bridge_count == 1


async def test_skips_ports_held_by_other_processes() -> None:
    held = [Phone(31800), Phone(31803)]  # blocks the RTP port of one pair, RTCP of the next
    media = MediaManager("127.0.0.1", 31800, 31807)
    try:
        endpoint = await media.create_endpoint()
        assert endpoint.local_port == 31804
        assert media.ports_in_use == 1
        await media.create_endpoint()
        with pytest.raises(PortsExhaustedError) as info:
            await media.create_endpoint()
        assert str(info.value) == "no bindable RTP port pair in 31800-31807"
    finally:
        await media.close()
        for phone_socket in held:
            phone_socket.sock.close()
    assert media.ports_in_use == 0


async def test_exhaustion_and_reuse() -> None:
    media = MediaManager("127.0.0.1", 31810, 31811)
    try:
        endpoint = await media.create_endpoint()
        with pytest.raises(PortsExhaustedError) as info:
            await media.create_endpoint()
        assert str(info.value) == "no free RTP port in 31810-31811"
        await media.release(endpoint)
        again = await media.create_endpoint()
        assert again.local_port == 31810
    finally:
        await media.close()


async def test_handler_errors_do_not_kill_the_socket(
    manager: MediaManager, phones: list[Phone], caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = await manager.create_endpoint()
    sender = phone(phones)
    got: list[bytes] = []

    def handler(ep: RtpEndpoint, data: bytes) -> None:
        got.append(data)
        if len(got) == 1:
            raise RuntimeError("boom")

    endpoint.on_packet = handler
    with caplog.at_level(logging.ERROR, logger="pypbx.media.endpoint"):
        sender.send(endpoint, rtp(1))
        sender.send(endpoint, rtp(2))
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
    assert len(got) == 2
    assert "RTP handler failed" in caplog.text


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, int]] = []

    def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
        self.seen.append((inbound, RtpPacket.parse(bytes(data)).ssrc))


async def test_taps_see_both_directions(manager: MediaManager, phones: list[Phone]) -> None:
    a, b, phone_a, phone_b = await call(manager, phones)
    tap = Recorder()
    a.add_tap(tap)
    phone_a.send(a, rtp(1))
    await phone_b.recv()
    phone_b.send(b, rtp(1, ssrc=PHONE_B_SSRC))
    await phone_a.recv()
    assert tap.seen == [(True, PHONE_A_SSRC), (False, a.output.ssrc)]
    a.remove_tap(tap)
    phone_a.send(a, rtp(2))
    await phone_b.recv()
    assert len(tap.seen) == 2


async def test_send_media_takes_over_and_hands_back(
    manager: MediaManager, phones: list[Phone], clock: Clock
) -> None:
    a, b, phone_a, phone_b = await call(manager, phones)
    phone_a.send(a, rtp(1))
    relayed = await phone_b.packet()
    direction = manager.bridge_of(b).toward(b)  # type: ignore[union-attr]
    direction.paused = True  # e.g. music on hold for B
    player = object()
    for _ in range(2):
        clock.now += 0.02
        b.send_media(b"\xff" * 160, 0, 160, writer=player)
    frames = [await phone_b.packet() for _ in range(2)]
    assert [f.sequence for f in frames] == [(relayed.sequence + i) & 0xFFFF for i in (1, 2)]
    assert [f.marker for f in frames] == [True, False]
    assert frames[1].timestamp == (frames[0].timestamp + 160) & 0xFFFFFFFF
    assert {f.ssrc for f in frames} == {relayed.ssrc}
    phone_a.send(a, rtp(2))
    assert await phone_b.nothing()
    direction.paused = False
    clock.now += 0.02
    phone_a.send(a, rtp(3))
    back = await phone_b.packet()
    assert back.sequence == (relayed.sequence + 3) & 0xFFFF
    assert back.timestamp == (frames[1].timestamp + 160) & 0xFFFFFFFF
    assert back.marker


async def test_nowhere_to_send(manager: MediaManager) -> None:
    endpoint = await manager.create_endpoint()
    assert endpoint.remote is None and endpoint.target is None
    endpoint.send(rtp(1))
    endpoint.send_rtcp(rr(1, 2))
    assert endpoint.counters.unsent == 2
    assert endpoint.counters.packets_out == 0
    await manager.release(endpoint)
    endpoint.set_remote(("127.0.0.1", 9))
    endpoint.send(rtp(2))  # closed: dropped, no exception
    assert endpoint.counters.unsent == 3


async def test_advertised_address() -> None:
    media = MediaManager("127.0.0.1", 31820, 31821, advertised_address="192.0.2.1")
    try:
        endpoint = await media.create_endpoint()
        assert (endpoint.local_address, endpoint.local_port) == ("192.0.2.1", 31820)
    finally:
        await media.close()


def test_bind_address_must_be_an_ip() -> None:
    with pytest.raises(ValueError):
        MediaManager("localhost", 31830, 31831)


async def test_icmp_errors_are_harmless(manager: MediaManager, phones: list[Phone]) -> None:
    endpoint = await manager.create_endpoint()
    closed = phone(phones)
    address = closed.address
    closed.sock.close()
    phones.remove(closed)
    endpoint.set_remote(address)
    for seq in range(3):
        endpoint.send(rtp(seq))
        await asyncio.sleep(0.01)
    listener = phone(phones)
    endpoint.set_remote(listener.address)
    endpoint.send(rtp(9))
    assert (await listener.packet()).sequence == 9
