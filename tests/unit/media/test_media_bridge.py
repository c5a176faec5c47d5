"""The relay logic of `Bridge`, driven with in-memory endpoints (no sockets)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from pypbx.media.bridge import Bridge, CodecSpec
from pypbx.media.g711 import alaw_to_ulaw, ulaw_to_alaw
from pypbx.media.rtp import RtpPacket
from pypbx.media.stream import RtpOutputStream

PCMU = CodecSpec(0, "PCMU", 101)
PCMU_96 = CodecSpec(0, "PCMU", 96)
PCMA = CodecSpec(8, "PCMA", 101)
PCMU_NO_EVENTS = CodecSpec(0, "PCMU", None)
PHONE_A_SSRC = 0x0A0A0A0A
PHONE_B_SSRC = 0x0B0B0B0B


class FakeEndpoint:
    """The part of RtpEndpoint a bridge uses."""

    def __init__(self, port: int, ssrc: int, sequence: int = 1000, timestamp: int = 50000):
        self.local_port = port
        self.output = RtpOutputStream(ssrc, sequence, timestamp)
        self.on_packet: Any = None
        self.on_rtcp: Any = None
        self.received_at = 0.0
        self.sent: list[bytes] = []
        self.rtcp_sent: list[bytes] = []

    def send(self, data: bytes | bytearray) -> None:
        self.sent.append(bytes(data))

    def send_rtcp(self, data: bytes) -> None:
        self.rtcp_sent.append(data)

    def reclaim(self) -> None:
        """Nothing is ever handed to a relay worker here."""

    def receive(self, data: bytes, now: float) -> None:
        self.received_at = now
        if self.on_packet is not None:
            self.on_packet(self, data)

    def receive_rtcp(self, data: bytes) -> None:
        if self.on_rtcp is not None:
            self.on_rtcp(self, data)

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(data) for data in self.sent]


def rtp(seq: int, ts: int, payload: bytes = b"\x01\x02\x03\x04", **kw: Any) -> bytes:
    fields: dict[str, Any] = {"payload_type": 0, "ssrc": PHONE_A_SSRC, "marker": False}
    fields.update(kw)
    return RtpPacket(sequence=seq, timestamp=ts, payload=payload, **fields).serialize()


def make(a_codec: CodecSpec = PCMU, b_codec: CodecSpec = PCMU) -> tuple[Any, Any, Bridge]:
    a = FakeEndpoint(31000, ssrc=0xAAAA0000, sequence=7, timestamp=70000)
    b = FakeEndpoint(31002, ssrc=0xBBBB0000, sequence=1000, timestamp=50000)
    bridge = Bridge(a, b, a_codec, b_codec)  # type: ignore[arg-type]
    bridge.start()
    return a, b, bridge


def talk(a: FakeEndpoint, count: int, *, seq: int = 500, ts: int = 8000, t0: float = 1.0) -> None:
    for i in range(count):
        a.receive(rtp(seq + i, ts + 160 * i), t0 + 0.02 * i)


def test_same_codec_rewrites_header_only() -> None:
    a, b, _ = make()
    talk(a, 3)
    packets = b.packets()
    assert [p.sequence for p in packets] == [1000, 1001, 1002]
    assert [p.timestamp for p in packets] == [50000, 50160, 50320]
    assert {p.ssrc for p in packets} == {0xBBBB0000}
    assert [p.marker for p in packets] == [True, False, False]  # first: new talkspurt
    assert {(p.payload_type, p.payload) for p in packets} == {(0, b"\x01\x02\x03\x04")}
    assert a.sent == []


def test_both_directions() -> None:
    a, b, _ = make()
    talk(a, 1)
    b.receive(rtp(9, 900, b"zz", ssrc=PHONE_B_SSRC, marker=True), 1.0)
    (back,) = a.packets()
    assert (back.ssrc, back.sequence, back.timestamp, back.payload) == (0xAAAA0000, 7, 70000, b"zz")
    assert back.marker


def test_marker_of_source_is_kept() -> None:
    a, b, _ = make()
    talk(a, 2)
    a.receive(rtp(502, 9000, marker=True), 1.1)
    assert [p.marker for p in b.packets()] == [True, False, True]


def test_payload_type_rewrite() -> None:
    a, b, _ = make(CodecSpec(0, "PCMU", 101), CodecSpec(96, "PCMU", 97))
    talk(a, 1)
    a.receive(rtp(501, 8160, b"\x00\x0a\x00\xa0", payload_type=101), 1.02)
    assert [p.payload_type for p in b.packets()] == [96, 97]


def test_pcmu_to_pcma_transcoding() -> None:
    a, b, _ = make(PCMU, PCMA)
    payload = bytes(range(256))
    a.receive(rtp(1, 0, payload), 1.0)
    (packet,) = b.packets()
    assert packet.payload_type == 8
    assert packet.payload == ulaw_to_alaw(payload)
    b.receive(rtp(1, 0, payload, payload_type=8, ssrc=PHONE_B_SSRC), 1.0)
    (back,) = a.packets()
    assert (back.payload_type, back.payload) == (0, alaw_to_ulaw(payload))


def test_telephone_event_passes_with_rewritten_type() -> None:
    a, b, _ = make(PCMU, PCMU_96)
    talk(a, 2)
    event = b"\x05\x0a\x00\xa0"  # digit 5, volume 10, duration 160
    a.receive(rtp(502, 8320, event, payload_type=101, marker=True), 1.04)
    a.receive(rtp(503, 8320, b"\x05\x0a\x01\x40", payload_type=101), 1.06)
    a.receive(rtp(504, 8320, b"\x05\x8a\x01\xe0", payload_type=101), 1.08)
    events = b.packets()[2:]
    assert [p.payload_type for p in events] == [96, 96, 96]
    assert [p.marker for p in events] == [True, False, False]
    assert {p.timestamp for p in events} == {50000 + 320}  # one event: one timestamp
    assert [p.sequence for p in events] == [1002, 1003, 1004]
    assert events[0].payload == event


def test_telephone_event_never_transcoded() -> None:
    a, b, _ = make(PCMU, PCMA)
    event = b"\x05\x0a\x00\xa0"
    a.receive(rtp(1, 0, event, payload_type=101, marker=True), 1.0)
    (packet,) = b.packets()
    assert (packet.payload_type, packet.payload, packet.marker) == (101, event, True)


def test_telephone_event_dropped_when_far_leg_has_none() -> None:
    a, b, bridge = make(PCMU, PCMU_NO_EVENTS)
    a.receive(rtp(1, 0, b"\x05\x0a\x00\xa0", payload_type=101), 1.0)
    assert b.sent == []
    assert bridge.a_to_b.dropped == 1


def test_unknown_payload_type_dropped() -> None:
    a, b, bridge = make()
    a.receive(rtp(1, 0, b"\x40", payload_type=13), 1.0)  # comfort noise, not negotiated
    a.receive(rtp(2, 160, payload_type=8), 1.0)  # PCMA on a PCMU leg
    assert b.sent == []
    assert bridge.a_to_b.dropped == 2


def test_csrcs_and_extension_are_stripped() -> None:
    a, b, _ = make()
    a.receive(rtp(1, 0, b"abcd", csrcs=[1, 2], extension=(0xBEDE, b"\x10\x50\x00\x00")), 1.0)
    (data,) = b.sent
    assert data[0] == 0x80
    assert len(data) == 12 + 4
    assert RtpPacket.parse(data).payload == b"abcd"


def test_truncated_extension_dropped() -> None:
    a, b, bridge = make()
    data = bytearray(rtp(1, 0, b""))
    data[0] |= 0x10
    a.receive(bytes(data + b"\xbe\xde"), 1.0)
    a.receive(bytes(data + b"\xbe\xde\x00\x05\x00\x00\x00\x00"), 1.0)
    assert b.sent == []
    assert bridge.a_to_b.dropped == 2
    a.receive(rtp(2, 160), 1.02)  # dropped packets did not start the stream
    (packet,) = b.packets()
    assert (packet.sequence, packet.timestamp, packet.marker) == (1000, 50000, True)


def test_transcoding_keeps_padding_out_of_the_payload() -> None:
    a, b, _ = make(PCMU, PCMA)
    data = bytearray(rtp(1, 0, b"\xff\xff\x00\x00\x00\x03"))
    data[0] |= 0x20
    a.receive(bytes(data), 1.0)
    (out,) = b.sent
    assert out[0] == 0xA0
    assert out[12:] == b"\xd5\xd5\x2a" + b"\x00\x00\x03"


def test_transcoding_with_bad_padding_dropped() -> None:
    a, b, bridge = make(PCMU, PCMA)
    data = bytearray(rtp(1, 0, b"\xff\x09"))
    data[0] |= 0x20
    a.receive(bytes(data), 1.0)
    assert b.sent == []
    assert bridge.a_to_b.dropped == 1


def test_sequence_and_timestamp_wrap() -> None:
    a, b, _ = make()
    a.receive(rtp(0xFFFF, 0xFFFFFF60), 1.0)
    a.receive(rtp(0, 0x00000000), 1.02)
    a.receive(rtp(1, 0x000000A0), 1.04)
    packets = b.packets()
    assert [p.sequence for p in packets] == [1000, 1001, 1002]
    assert [p.timestamp for p in packets] == [50000, 50160, 50320]


def test_loss_and_reordering_are_preserved() -> None:
    a, b, _ = make()
    for seq, now in ((500, 1.0), (503, 1.06), (502, 1.07)):
        a.receive(rtp(seq, 8000 + 160 * (seq - 500)), now)
    assert [p.sequence for p in b.packets()] == [1000, 1003, 1002]
    assert (b.output.sequence, b.output.timestamp) == (1003, 50480)


def test_pause_and_resume_continue_the_stream() -> None:
    a, b, bridge = make()
    talk(a, 2)  # B gets 1000, 1001 (ts 50160 sent at 1.02)
    bridge.toward(b).paused = True
    talk(a, 50, seq=502, ts=8320, t0=1.04)
    assert len(b.sent) == 2
    bridge.toward(b).paused = False
    a.receive(rtp(552, 8320 + 50 * 160), 2.02)
    resumed = b.packets()[-1]
    assert resumed.sequence == 1002  # no gap
    assert resumed.timestamp == 50160 + 8000  # one second later
    assert resumed.marker


def test_new_source_ssrc_continues_the_stream() -> None:
    a, b, _ = make()
    talk(a, 2)
    a.receive(rtp(7, 123456, ssrc=0x5555), 1.06)  # the phone restarted its stream
    a.receive(rtp(8, 123616, ssrc=0x5555), 1.08)
    packets = b.packets()
    assert [p.sequence for p in packets] == [1000, 1001, 1002, 1003]
    assert [p.timestamp for p in packets] == [50000, 50160, 50480, 50640]
    assert [p.marker for p in packets] == [True, False, True, False]


def test_rebridge_keeps_the_phone_stream_continuous() -> None:
    a, b, first = make()
    talk(a, 3)  # B: 1000..1002, last ts 50320 at 1.04
    first.stop()
    c = FakeEndpoint(31004, ssrc=0xCCCC0000)
    second = Bridge(c, b, PCMA, PCMU)  # type: ignore[arg-type]
    second.start()
    c.receive(rtp(77, 999, b"\xd5", payload_type=8, ssrc=0x7777), 1.54)
    packet = b.packets()[-1]
    assert (packet.ssrc, packet.sequence, packet.timestamp) == (0xBBBB0000, 1003, 50320 + 4000)
    assert packet.marker
    assert packet.payload == alaw_to_ulaw(b"\xd5")


def test_player_takeover_and_back() -> None:
    a, b, bridge = make()
    talk(a, 2)  # 1000, 1001
    direction = bridge.toward(b)
    direction.paused = True
    player = object()
    frames = [b.output.next_frame(player, 160, 1.04 + 0.02 * i) for i in range(3)]
    assert frames == [(1002, 50320, True), (1003, 50480, False), (1004, 50640, False)]
    direction.paused = False
    talk(a, 1, seq=510, ts=9600, t0=1.10)
    packet = b.packets()[-1]
    assert (packet.sequence, packet.timestamp, packet.marker) == (1005, 50800, True)


def test_stop_gives_handlers_back() -> None:
    a, b, bridge = make()
    assert bridge.active
    bridge.stop()
    assert (a.on_packet, b.on_packet, a.on_rtcp, b.on_rtcp) == (None, None, None, None)
    assert not bridge.active
    a.receive(rtp(1, 0), 1.0)
    assert b.sent == []
    bridge.stop()  # twice is fine


def test_stop_leaves_other_owners_alone() -> None:
    a, b, bridge = make()

    def other(endpoint: object, data: bytes) -> None:
        pass

    b.on_packet = other
    bridge.stop()
    assert b.on_packet is other
    assert a.on_packet is None


def test_toward() -> None:
    a, b, bridge = make()
    assert bridge.toward(b) is bridge.a_to_b
    assert bridge.toward(a) is bridge.b_to_a
    with pytest.raises(ValueError) as info:
        bridge.toward(FakeEndpoint(1, 1))  # type: ignore[arg-type]
    assert str(info.value) == "endpoint is not part of this bridge"


def test_bridge_to_itself() -> None:
    a = FakeEndpoint(31000, 1)
    with pytest.raises(ValueError) as info:
        Bridge(a, a, PCMU, PCMU)  # type: ignore[arg-type]
    assert str(info.value) == "cannot bridge an endpoint to itself"


def rr(sender: int, about: int) -> bytes:
    return struct.pack("!BBHI", 0x81, 201, 7, sender) + struct.pack("!6I", about, 0, 0, 0, 0, 0)


def test_rtcp_forwarded_with_mapped_ssrcs() -> None:
    a, b, _ = make()
    talk(a, 1)
    b.receive(rtp(1, 0, ssrc=PHONE_B_SSRC), 1.0)
    # phone A reports about the stream the PBX sends it (a.output.ssrc)
    a.receive_rtcp(rr(PHONE_A_SSRC, 0xAAAA0000))
    assert b.rtcp_sent == [rr(0xBBBB0000, PHONE_B_SSRC)]
    b.receive_rtcp(rr(PHONE_B_SSRC, 0xBBBB0000))
    assert a.rtcp_sent == [rr(0xAAAA0000, PHONE_A_SSRC)]


def test_rtcp_bye_malformed_and_paused_not_forwarded() -> None:
    a, b, bridge = make()
    a.receive_rtcp(struct.pack("!BBHI", 0x81, 203, 1, PHONE_A_SSRC))
    a.receive_rtcp(b"\x80\xc9\x00\x09")
    bridge.toward(b).paused = True
    a.receive_rtcp(rr(1, 2))
    assert b.rtcp_sent == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, "G722", None), "unsupported codec 'G722', expected PCMU or PCMA"),
        ((0, "pcmu", None), "unsupported codec 'pcmu', expected PCMU or PCMA"),
        ((128, "PCMU", None), "payload type 128 is outside 0-127"),
        ((0, "PCMU", 200), "payload type 200 is outside 0-127"),
        ((8, "PCMA", 8), "audio and telephone-event must use different payload types"),
    ],
)
def test_codec_spec_validation(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError) as info:
        CodecSpec(*args)
    assert str(info.value) == message


def test_codec_spec() -> None:
    spec = CodecSpec(8, "PCMA")
    assert spec.telephone_event_pt is None
    assert spec.clock_rate == 8000
    assert spec == CodecSpec(8, "PCMA", None)
    with pytest.raises(AttributeError):
        spec.payload_type = 0  # type: ignore[misc]
