"""The relay's per-packet shortcuts keep the behaviour of the long way round.

Endpoints here have in-memory transports and a fake clock, and packets are handed to the
receive path the way the event loop does, so each shortcut (receiver bound straight to the
endpoint, latch fast path, one-direction taps, the inlined stream advance) is checked
against what the plain code (Latch.accept, RtpOutputStream.advance) would have done.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from pypbx.media.bridge import Bridge, CodecSpec
from pypbx.media.endpoint import RtpEndpoint
from pypbx.media.rtp import RtpPacket
from pypbx.media.stream import RtpOutputStream

PCMU = CodecSpec(0, "PCMU", 101)
PHONE_A = ("192.0.2.10", 4000)
PHONE_B = ("192.0.2.20", 5000)
INTRUDER = ("198.51.100.66", 6666)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Wire:
    """Stands in for the RTP socket: records what is sent where."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes | bytearray, addr: Any) -> None:
        self.sent.append((bytes(data), addr))


class Tap:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, int]] = []

    def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
        self.seen.append((inbound, RtpPacket.parse(bytes(data)).sequence))


def endpoint(clock: Clock, port: int, remote: tuple[str, int]) -> tuple[RtpEndpoint, Wire]:
    ep = RtpEndpoint("192.0.2.1", port, relatch_after=2.0, clock=clock)
    wire = Wire()
    ep._rtp_socket = wire  # type: ignore[assignment]
    ep.set_remote(remote, payload_map={0: "PCMU", 101: "telephone-event"})
    return ep, wire


def rtp(seq: int, ts: int | None = None, *, ssrc: int = 0xA1A1A1A1, pt: int = 0) -> bytes:
    ts = 160 * seq if ts is None else ts
    return RtpPacket(pt, seq, ts, ssrc, payload=bytes([seq & 0xFF]) * 160).serialize()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_latched_source_keeps_its_time_and_target(clock: Clock) -> None:
    ep, _ = endpoint(clock, 30000, ("10.0.0.5", 4000))  # SDP says a private address
    ep._rtp_received(rtp(1), PHONE_A)
    assert ep.target == PHONE_A
    clock.now += 1.5
    ep._rtp_received(rtp(2), PHONE_A)
    assert ep._latch.seen_at == clock.now
    assert ep.received_at == clock.now
    clock.now += 1.5  # 1.5 s since the latched source last sent: the intruder is refused
    ep._rtp_received(rtp(3), INTRUDER)
    assert ep.counters.rejected == 1
    assert ep.target == PHONE_A


def test_intruder_takes_over_only_after_the_quiet_period(clock: Clock) -> None:
    ep, _ = endpoint(clock, 30000, PHONE_A)
    ep._rtp_received(rtp(1), PHONE_A)
    clock.now += 2.5
    ep._rtp_received(rtp(2), INTRUDER)
    assert ep.target == INTRUDER
    ep._rtp_received(rtp(3), PHONE_A)  # now the old source is the stranger
    assert ep.counters.rejected == 1
    assert ep.target == INTRUDER


def test_new_sdp_unlocks_the_fast_path(clock: Clock) -> None:
    ep, _ = endpoint(clock, 30000, PHONE_A)
    ep._rtp_received(rtp(1), PHONE_A)
    ep.set_remote(PHONE_A, payload_map={0: "PCMU", 101: "telephone-event"})  # re-INVITE
    moved = ("192.0.2.11", 4002)
    ep._rtp_received(rtp(2), moved)  # the phone moved: taken at once, no quiet period
    assert ep.target == moved
    assert ep.counters.rejected == 0
    ep._rtp_received(rtp(3), PHONE_A)  # and locked again onto the new source
    assert ep.counters.rejected == 1


def test_muxed_rtcp_relatch_is_seen_by_the_fast_path(clock: Clock) -> None:
    ep, _ = endpoint(clock, 30000, PHONE_A)
    ep._rtp_received(rtp(1), PHONE_A)
    clock.now += 3.0
    empty_rr = bytes([0x80, 201, 0, 1]) + b"\x00\x00\x00\x01"
    report = empty_rr * 2  # muxed; an RTP-sized datagram (12+ bytes)
    ep._rtp_received(report, INTRUDER)
    assert ep.target == INTRUDER
    ep._rtp_received(rtp(2), PHONE_A)
    assert ep.counters.rejected == 1
    ep._rtp_received(rtp(3), INTRUDER)
    assert ep.counters.packets_in == 2


def test_taps_can_watch_one_direction(clock: Clock) -> None:
    ep, wire = endpoint(clock, 30000, PHONE_A)
    both, inbound_only, outbound_only = Tap(), Tap(), Tap()
    ep.add_tap(both)
    ep.add_tap(inbound_only, outbound=False)
    ep.add_tap(outbound_only, inbound=False)
    ep._rtp_received(rtp(7), PHONE_A)
    ep.send(rtp(8))
    assert both.seen == [(True, 7), (False, 8)]
    assert inbound_only.seen == [(True, 7)]
    assert outbound_only.seen == [(False, 8)]
    assert len(wire.sent) == 1
    ep.remove_tap(inbound_only)
    ep.remove_tap(outbound_only)
    ep._rtp_received(rtp(9), PHONE_A)
    ep.send(rtp(10))
    assert inbound_only.seen == [(True, 7)]
    assert outbound_only.seen == [(False, 8)]
    assert both.seen[-2:] == [(True, 9), (False, 10)]


def test_removing_an_unknown_tap_fails(clock: Clock) -> None:
    ep, _ = endpoint(clock, 30000, PHONE_A)
    tap = Tap()
    with pytest.raises(ValueError, match=re.escape("is not a tap of <RtpEndpoint 192.0.2.1:30000")):
        ep.remove_tap(tap)


def test_a_tap_may_remove_itself_while_notified(clock: Clock) -> None:
    ep, _ = endpoint(clock, 30000, PHONE_A)
    later = Tap()

    class OneShot(Tap):
        def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
            super().on_rtp(endpoint, data, inbound)
            endpoint.remove_tap(self)

    once = OneShot()
    ep.add_tap(once, outbound=False)
    ep.add_tap(later, outbound=False)
    ep._rtp_received(rtp(1), PHONE_A)
    ep._rtp_received(rtp(2), PHONE_A)
    assert once.seen == [(True, 1)]
    assert later.seen == [(True, 1), (True, 2)]


def test_failing_tap_does_not_stop_the_relay(clock: Clock) -> None:
    a, _ = endpoint(clock, 30000, PHONE_A)
    b, wire_b = endpoint(clock, 30002, PHONE_B)
    Bridge(a, b, PCMU, PCMU).start()

    class Broken:
        def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
            raise RuntimeError("tap bug")

    a.add_tap(Broken())
    a._rtp_received(rtp(1), PHONE_A)
    assert len(wire_b.sent) == 1


def test_relay_output_matches_the_stream_model(clock: Clock) -> None:
    """In-order, reordered, late, new-SSRC and event packets: what leg B gets, and B's
    output stream state, are what RtpOutputStream.handover/advance would give."""
    a, _ = endpoint(clock, 30000, PHONE_A)
    b, wire_b = endpoint(clock, 30002, PHONE_B)
    b.output = RtpOutputStream(0xB0B0B0B0, 1000, 50000)
    Bridge(a, b, PCMU, PCMU).start()
    model = RtpOutputStream(0xB0B0B0B0, 1000, 50000)
    script = [
        (rtp(10), 0.0),
        (rtp(11), 0.02),
        (rtp(13), 0.04),
        (rtp(12), 0.0),  # reordered: must not move the stream back
        (rtp(14, pt=101), 0.02),  # a telephone-event
        (rtp(200, 9000, ssrc=0xC3C3C3C3), 0.5),  # the phone restarted its stream
        (rtp(201, 9160, ssrc=0xC3C3C3C3), 0.02),
        (rtp(0xFFFF, 0xFFFFFF60, ssrc=0xD4D4D4D4), 0.02),
        (rtp(0, 0, ssrc=0xD4D4D4D4), 0.02),  # wraps
    ]
    ssrc = offsets = None
    for data, step in script:
        clock.now += step
        packet = RtpPacket.parse(data)
        marker = False
        if packet.ssrc != ssrc:
            start_seq, start_ts = model.handover("relay", clock.now)
            ssrc = packet.ssrc
            offsets = (start_seq - packet.sequence, start_ts - packet.timestamp)
            marker = packet.payload_type == 0
        assert offsets is not None
        out_seq = (packet.sequence + offsets[0]) & 0xFFFF
        out_ts = (packet.timestamp + offsets[1]) & 0xFFFFFFFF
        model.advance(out_seq, out_ts, clock.now)
        a._rtp_received(data, PHONE_A)
        sent = RtpPacket.parse(wire_b.sent[-1][0])
        assert (sent.sequence, sent.timestamp, sent.ssrc) == (out_seq, out_ts, 0xB0B0B0B0)
        assert sent.marker == marker
        assert sent.payload == packet.payload
        assert sent.payload_type == packet.payload_type
        assert (b.output.sequence, b.output.timestamp, b.output.sent_at) == (
            model.sequence,
            model.timestamp,
            model.sent_at,
        )
    assert b.counters.packets_out == len(script)
