"""InboundAudio: the tap that turns what a phone sends into key presses and decoded audio.

End-to-end cases go through a real RtpEndpoint on 127.0.0.1 (a UDP socket plays the phone);
header vectors are handed to `on_rtp` directly, as the endpoint would."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from pypbx.media.dtmf import DtmfDigit, dtmf_tones, encode_event
from pypbx.media.endpoint import CodecSpec, MediaManager, RtpEndpoint
from pypbx.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from pypbx.media.inbound import InboundAudio
from pypbx.media.player import FRAME, Pcm
from pypbx.media.rtp import RtpPacket

PCMU = CodecSpec(0, "PCMU", 101)
PCMA = CodecSpec(8, "PCMA", 96)
PCMU_NO_EVENTS = CodecSpec(0, "PCMU")
SSRC = 0x12345678


class Clock:
    def __init__(self) -> None:
        self.now = 40.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    clock: Clock
    endpoint: RtpEndpoint
    phone: socket.socket
    digits: list[DtmfDigit] = field(default_factory=list)

    def inbound(self, codec: CodecSpec = PCMU, *, inband: bool = False) -> InboundAudio:
        return InboundAudio(codec, self.digits.append, inband=inband, clock=self.clock)

    def feed(self, inbound: InboundAudio, *packets: bytes | bytearray) -> None:
        for data in packets:
            inbound.on_rtp(self.endpoint, data, True)

    def send(self, *packets: bytes) -> None:
        for data in packets:
            self.phone.sendto(data, ("127.0.0.1", self.endpoint.local_port))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = Clock()
    media = MediaManager("127.0.0.1", 32200, 32299, clock=clock)
    endpoint = await media.create_endpoint()
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    endpoint.set_remote(phone.getsockname())
    yield Rig(clock, endpoint, phone)
    await media.close()
    phone.close()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def event_packets(
    digit: int, timestamp: int, seq: int, *, tone: int = 800, ssrc: int = SSRC, pt: int = 101
) -> list[bytes]:
    """A press as a phone sends it: updates every 160 samples, then the end packet x3."""
    durations = [*range(160, tone, 160), tone]
    packets = []
    for index, duration in enumerate(durations):
        end = duration == tone
        packets.append(
            RtpPacket(
                pt,
                seq + index,
                timestamp,
                ssrc,
                encode_event(digit, end, 10, duration),
                marker=index == 0,
            ).serialize()
        )
    last = packets[-1]
    for repeat in (1, 2):
        packets.append(last[:2] + struct.pack("!H", seq + len(durations) - 1 + repeat) + last[4:])
    return packets


def audio_packets(
    pcm: Pcm, encode: Callable[[Pcm], bytes] = ulaw_encode, pt: int = 0
) -> list[bytes]:
    padded = np.concatenate((pcm, np.zeros(-len(pcm) % FRAME, dtype=np.int16)))
    return [
        RtpPacket(pt, i, i * FRAME, SSRC, encode(padded[i * FRAME : (i + 1) * FRAME])).serialize()
        for i in range(len(padded) // FRAME)
    ]


def ramp(count: int = FRAME, start: int = -4000, step: int = 50) -> Pcm:
    return (np.arange(count, dtype=np.int32) * step + start).astype(np.int16)


class Sink:
    def __init__(self) -> None:
        self.got: list[Pcm] = []

    def __call__(self, pcm: Pcm) -> None:
        self.got.append(pcm)


# --------------------------------------------------------------------------- RFC 4733


async def test_presses_over_udp_one_digit_each(rig: Rig) -> None:
    inbound = rig.inbound()
    rig.endpoint.add_tap(inbound)
    rig.send(*event_packets(1, 1000, 10), *event_packets(11, 2600, 20))
    await until(lambda: len(rig.digits) >= 2)
    await asyncio.sleep(0.05)  # the rest of the packets, including repeated end packets
    assert rig.digits == [DtmfDigit("1", "rfc4733", 40.0), DtmfDigit("#", "rfc4733", 40.0)]


def test_repeated_and_duplicated_packets_report_once(rig: Rig) -> None:
    inbound = rig.inbound()
    packets = event_packets(5, 7000, 1)
    rig.feed(inbound, *packets, *packets, packets[-1])
    assert rig.digits == [DtmfDigit("5", "rfc4733", 40.0)]


def test_a_press_seen_only_by_its_end_packet_has_a_duration(rig: Rig) -> None:
    inbound = rig.inbound()
    rig.clock.now = 41.5
    rig.feed(inbound, *event_packets(12, 9000, 1, tone=960)[-3:])
    assert rig.digits == [DtmfDigit("A", "rfc4733", 41.5, 120)]


def test_same_key_twice_is_two_presses(rig: Rig) -> None:
    inbound = rig.inbound()
    rig.feed(inbound, *event_packets(0, 1000, 1), *event_packets(0, 2600, 9))
    assert [d.digit for d in rig.digits] == ["0", "0"]


def test_new_ssrc_restarts_the_numbering(rig: Rig) -> None:
    inbound = rig.inbound()
    rig.feed(inbound, *event_packets(3, 5000, 1))
    rig.feed(inbound, *event_packets(3, 5000, 1, ssrc=SSRC + 1))  # phone restarted its stream
    assert [d.digit for d in rig.digits] == ["3", "3"]


def test_events_that_are_not_keys_and_malformed_payloads_are_ignored(rig: Rig) -> None:
    inbound = rig.inbound()
    flash = RtpPacket(101, 1, 100, SSRC, encode_event(16, False, 10, 160), marker=True)
    short = RtpPacket(101, 2, 200, SSRC, b"\x01\x0a", marker=True)
    empty = RtpPacket(101, 3, 300, SSRC, b"", marker=True)
    rig.feed(inbound, flash.serialize(), short.serialize(), empty.serialize())
    assert rig.digits == []
    rig.feed(inbound, *event_packets(9, 400, 4))
    assert [d.digit for d in rig.digits] == ["9"]


def test_outbound_packets_are_not_the_phones(rig: Rig) -> None:
    inbound = rig.inbound(inband=True)
    sink = Sink()
    inbound.sinks["owner"] = sink
    for data in event_packets(1, 1000, 1) + audio_packets(ramp()):
        inbound.on_rtp(rig.endpoint, data, False)
    assert rig.digits == [] and sink.got == []


def test_event_payload_type_follows_the_codec(rig: Rig) -> None:
    inbound = rig.inbound(PCMA)  # telephone-event is 96 here
    rig.feed(inbound, *event_packets(1, 1000, 1))  # sent as 101: not an event for this leg
    assert rig.digits == []
    rig.feed(inbound, *event_packets(2, 2000, 10, pt=96))
    assert [d.digit for d in rig.digits] == ["2"]


def test_no_telephone_event_negotiated(rig: Rig) -> None:
    inbound = rig.inbound(PCMU_NO_EVENTS)
    sink = Sink()
    inbound.sinks["owner"] = sink
    rig.feed(inbound, *event_packets(1, 1000, 1))
    assert rig.digits == [] and sink.got == []


# --------------------------------------------------------------------------- audio


async def test_audio_reaches_sinks_over_udp(rig: Rig) -> None:
    inbound = rig.inbound()
    rig.endpoint.add_tap(inbound)
    sink = Sink()
    inbound.sinks["recorder"] = sink
    pcm = ramp(3 * FRAME, -9000, 13)
    rig.send(*audio_packets(pcm))
    await until(lambda: len(sink.got) == 3)
    expected = ulaw_decode(ulaw_encode(pcm))
    assert np.concatenate(sink.got).tolist() == expected.tolist()
    assert all(frame.dtype == np.int16 for frame in sink.got)


def test_audio_goes_to_every_sink_while_it_is_there(rig: Rig) -> None:
    inbound = rig.inbound()
    first, second = Sink(), Sink()
    packets = audio_packets(ramp(3 * FRAME))
    rig.feed(inbound, packets[0])  # nobody listening: nothing to decode for
    inbound.sinks["a"] = first
    inbound.sinks["b"] = second
    rig.feed(inbound, packets[1])
    del inbound.sinks["a"]
    rig.feed(inbound, packets[2])
    decoded = [ulaw_decode(RtpPacket.parse(p).payload) for p in packets]
    assert [f.tolist() for f in first.got] == [decoded[1].tolist()]
    assert [f.tolist() for f in second.got] == [decoded[1].tolist(), decoded[2].tolist()]


def test_pcma_is_decoded_as_alaw(rig: Rig) -> None:
    inbound = rig.inbound(PCMA)
    sink = Sink()
    inbound.sinks["owner"] = sink
    pcm = ramp(FRAME, -20000, 250)
    rig.feed(inbound, *audio_packets(pcm, alaw_encode, pt=8))
    assert [f.tolist() for f in sink.got] == [alaw_decode(alaw_encode(pcm)).tolist()]


def test_set_codec_switches_the_decoder(rig: Rig) -> None:
    inbound = rig.inbound(PCMU)
    sink = Sink()
    inbound.sinks["owner"] = sink
    pcm = ramp(FRAME, -20000, 250)
    inbound.set_codec(PCMA, inband=False)
    assert inbound.codec == PCMA
    rig.feed(inbound, *audio_packets(pcm, ulaw_encode, pt=0))  # the old type is now foreign
    rig.feed(inbound, *audio_packets(pcm, alaw_encode, pt=8))
    assert [f.tolist() for f in sink.got] == [alaw_decode(alaw_encode(pcm)).tolist()]


def test_other_payload_types_are_ignored(rig: Rig) -> None:
    inbound = rig.inbound(PCMU, inband=True)
    sink = Sink()
    inbound.sinks["owner"] = sink
    tones = dtmf_tones("1", tone_ms=200)
    rig.feed(inbound, *audio_packets(ramp(), alaw_encode, pt=8))
    rig.feed(inbound, *audio_packets(tones, pt=13))
    assert sink.got == [] and rig.digits == []


def test_empty_audio_payload_is_ignored(rig: Rig) -> None:
    inbound = rig.inbound()
    sink = Sink()
    inbound.sinks["owner"] = sink
    rig.feed(inbound, RtpPacket(0, 1, 0, SSRC, b"").serialize())
    assert sink.got == []


def test_a_sink_may_remove_itself(rig: Rig) -> None:
    inbound = rig.inbound()
    got: list[int] = []

    def once(pcm: Pcm) -> None:
        got.append(len(pcm))
        del inbound.sinks["once"]

    inbound.sinks["once"] = once
    inbound.sinks["other"] = Sink()
    rig.feed(inbound, *audio_packets(ramp(2 * FRAME)))
    assert got == [FRAME]
    assert "once" not in inbound.sinks


def test_bytearray_packets(rig: Rig) -> None:
    inbound = rig.inbound()
    sink = Sink()
    inbound.sinks["owner"] = sink
    rig.feed(inbound, *(bytearray(p) for p in audio_packets(ramp())))
    rig.feed(inbound, *(bytearray(p) for p in event_packets(4, 100, 5)))
    assert len(sink.got) == 1
    assert [d.digit for d in rig.digits] == ["4"]


# --------------------------------------------------------------------------- in-band


@pytest.mark.parametrize(
    ("codec", "encode"), [(PCMU_NO_EVENTS, ulaw_encode), (CodecSpec(8, "PCMA"), alaw_encode)]
)
def test_inband_tones_become_digits(
    rig: Rig, codec: CodecSpec, encode: Callable[[Pcm], bytes]
) -> None:
    inbound = rig.inbound(codec, inband=True)
    assert inbound.inband
    pcm = np.concatenate((dtmf_tones("15#D"), np.zeros(1600, dtype=np.int16)))
    rig.feed(inbound, *audio_packets(pcm, encode, pt=codec.payload_type))
    assert [(d.digit, d.source) for d in rig.digits] == [
        ("1", "inband"),
        ("5", "inband"),
        ("#", "inband"),
        ("D", "inband"),
    ]
    assert {d.at for d in rig.digits} == {40.0}


async def test_inband_tones_over_udp(rig: Rig) -> None:
    inbound = rig.inbound(PCMU_NO_EVENTS, inband=True)
    rig.endpoint.add_tap(inbound)
    rig.send(*audio_packets(np.concatenate((dtmf_tones("28"), np.zeros(800, dtype=np.int16)))))
    await until(lambda: len(rig.digits) >= 2)
    assert [d.digit for d in rig.digits] == ["2", "8"]


def test_inband_off_hears_no_tones(rig: Rig) -> None:
    inbound = rig.inbound(PCMU_NO_EVENTS, inband=False)
    assert not inbound.inband
    rig.feed(inbound, *audio_packets(dtmf_tones("123")))
    assert rig.digits == []


def test_inband_can_be_switched(rig: Rig) -> None:
    inbound = rig.inbound(PCMU_NO_EVENTS, inband=False)
    inbound.set_codec(PCMU_NO_EVENTS, inband=True)
    assert inbound.inband
    rig.feed(inbound, *audio_packets(np.concatenate((dtmf_tones("7"), np.zeros(800, np.int16)))))
    assert [d.digit for d in rig.digits] == ["7"]
    inbound.set_codec(PCMU_NO_EVENTS, inband=False)
    assert not inbound.inband
    rig.feed(inbound, *audio_packets(dtmf_tones("9")))
    assert [d.digit for d in rig.digits] == ["7"]


def test_inband_and_sinks_share_the_decoded_audio(rig: Rig) -> None:
    inbound = rig.inbound(PCMU_NO_EVENTS, inband=True)
    sink = Sink()
    inbound.sinks["owner"] = sink
    pcm = np.concatenate((dtmf_tones("6"), np.zeros(800, np.int16)))
    packets = audio_packets(pcm)
    rig.feed(inbound, *packets)
    assert [d.digit for d in rig.digits] == ["6"]
    assert len(sink.got) == len(packets)


# --------------------------------------------------------------------------- headers


def header(
    pt: int,
    *,
    csrc: int = 0,
    extension: bytes | None = None,
    padding: int = 0,
    payload: bytes,
    marker: bool = False,
    timestamp: int = 4000,
) -> bytes:
    """An RTP packet built by hand, so the header can say anything."""
    first = 0x80 | csrc | (0x10 if extension is not None else 0) | (0x20 if padding else 0)
    data = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, 77, timestamp, SSRC)
    data += b"".join(struct.pack("!I", 0xC0C0C000 + i) for i in range(csrc))
    if extension is not None:
        data += extension
    data += payload
    if padding:
        data += bytes(padding - 1) + bytes([padding])
    return data


EXTENSION = struct.pack("!HH", 0xBEDE, 2) + bytes(range(8))


@pytest.mark.parametrize(
    "shape",
    [
        {"csrc": 2},
        {"extension": EXTENSION},
        {"extension": struct.pack("!HH", 0xBEDE, 0)},
        {"padding": 4},
        {"padding": 1},
        {"csrc": 15, "extension": EXTENSION, "padding": 7},
    ],
)
def test_audio_behind_csrcs_extensions_and_padding(rig: Rig, shape: dict[str, Any]) -> None:
    inbound = rig.inbound()
    sink = Sink()
    inbound.sinks["owner"] = sink
    payload = ulaw_encode(ramp())
    rig.feed(inbound, header(0, payload=payload, **shape))
    assert [f.tolist() for f in sink.got] == [ulaw_decode(payload).tolist()]


@pytest.mark.parametrize(
    "shape", [{"csrc": 3}, {"extension": EXTENSION, "padding": 3}, {"padding": 12}]
)
def test_event_behind_csrcs_extensions_and_padding(rig: Rig, shape: dict[str, Any]) -> None:
    inbound = rig.inbound()
    data = header(101, payload=encode_event(8, True, 10, 800), marker=True, **shape)
    rig.feed(inbound, data)
    assert rig.digits == [DtmfDigit("8", "rfc4733", 40.0, 100)]


def lying_packets(pt: int, payload: bytes) -> list[bytes]:
    """Headers that announce more than the datagram holds (`payload` under 48 bytes)."""
    assert len(payload) < 48
    plain = header(pt, payload=payload)
    return [
        plain[:12],  # not even the payload
        bytes([0x80 | 15]) + plain[1:],  # 15 CSRCs announced: 60 bytes, more than there are
        bytes([0x90]) + plain[1:12],  # extension bit, no room for its header
        bytes([0x90]) + plain[1:12] + struct.pack("!HH", 0xBEDE, 500) + payload,  # 2000 bytes
        bytes([0xA0]) + plain[1:-1] + bytes([255]),  # padding longer than the packet
        bytes([0xB2]) + plain[1:12] + struct.pack("!HH", 1, 0xFFFF),  # all of it at once
    ]


@pytest.mark.parametrize("index", range(6))
def test_lying_audio_header_is_ignored(rig: Rig, index: int) -> None:
    inbound = rig.inbound(inband=True)
    sink = Sink()
    inbound.sinks["owner"] = sink
    rig.feed(inbound, lying_packets(0, ulaw_encode(ramp(40)))[index])
    assert sink.got == [] and rig.digits == []


@pytest.mark.parametrize("index", range(6))
def test_lying_event_header_is_ignored(rig: Rig, index: int) -> None:
    inbound = rig.inbound()
    rig.feed(inbound, lying_packets(101, encode_event(1, True, 10, 800))[index])
    assert rig.digits == []
    rig.feed(inbound, *event_packets(2, 9000, 1))  # and the next press still counts
    assert [d.digit for d in rig.digits] == ["2"]


def test_padding_count_of_zero_is_a_lying_header(rig: Rig) -> None:
    """RFC 3550 5.1: the padding count includes itself, so 0 is malformed (as
    `RtpPacket.parse` says); its byte must not be taken for audio."""
    inbound = rig.inbound()
    sink = Sink()
    inbound.sinks["owner"] = sink
    data = bytes([0xA0]) + header(0, payload=ulaw_encode(ramp()))[1:] + b"\x00"
    rig.feed(inbound, data)
    assert sink.got == []


async def test_lying_headers_over_udp_leave_the_tap_working(rig: Rig) -> None:
    inbound = rig.inbound()
    rig.endpoint.add_tap(inbound)
    sink = Sink()
    inbound.sinks["owner"] = sink
    rig.send(*lying_packets(0, ulaw_encode(ramp(40))), *audio_packets(ramp()))
    rig.send(*lying_packets(101, encode_event(1, True, 10, 800)), *event_packets(3, 100, 50))
    await until(lambda: len(rig.digits) == 1 and len(sink.got) == 1)
    assert rig.digits[0].digit == "3"
