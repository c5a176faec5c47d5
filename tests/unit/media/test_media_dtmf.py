"""DTMF: RFC 4733 payload vectors, send schedules, the event receiver, tones and the detector."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.media.dtmf import (
    DIGITS,
    DtmfDigit,
    DtmfError,
    DtmfEventReceiver,
    DtmfEventSender,
    InbandDtmfDetector,
    ScheduledPacket,
    TelephoneEvent,
    decode_event,
    digit_to_event,
    dtmf_tone,
    dtmf_tones,
    encode_event,
    event_to_digit,
    schedule_digits,
)
from pypbx.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from pypbx.media.rtp import RtpPacket

Pcm = npt.NDArray[np.int16]
RATE = 8000
SIPP_PCAP = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- digits and payloads ------------------------------------------------------------------


def test_digit_event_mapping() -> None:
    assert [digit_to_event(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert [digit_to_event(d) for d in "abcd"] == [12, 13, 14, 15]
    assert "".join(event_to_digit(e) for e in range(16)) == "0123456789*#ABCD"


@pytest.mark.parametrize("digit", ["E", "", "12", " ", "+", "\u0663"])
def test_invalid_digit(digit: str) -> None:
    with pytest.raises(DtmfError) as info:
        digit_to_event(digit)
    assert str(info.value) == f"invalid DTMF digit {digit!r}: expected one of 0-9 * # A-D"


@pytest.mark.parametrize("event", [-1, 16, 255])
def test_event_that_is_not_a_key(event: int) -> None:
    with pytest.raises(DtmfError) as info:
        event_to_digit(event)
    assert str(info.value) == f"telephone-event {event} is not a DTMF key (keys are events 0-15)"


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        ("01 0a 00 a0", TelephoneEvent(1, False, 10, 160)),
        ("01 8a 03 20", TelephoneEvent(1, True, 10, 800)),
        ("0b bf ff ff", TelephoneEvent(11, True, 63, 65535)),
        ("00 00 00 00", TelephoneEvent(0, False, 0, 0)),
        ("10 07 01 40", TelephoneEvent(16, False, 7, 320)),  # flash: decoded, not a key
        # from SIPp's dtmf_2833_1.pcap: the first update and the end packet of key 1
        ("01 0a 00 00", TelephoneEvent(1, False, 10, 0)),
        ("01 8a 08 c0", TelephoneEvent(1, True, 10, 2240)),
    ],
)
def test_payload_vectors(payload: str, event: TelephoneEvent) -> None:
    assert decode_event(h(payload)) == event
    assert encode_event(event.event, event.end, event.volume, event.duration) == h(payload)


def test_decode_ignores_reserved_bit_and_trailing_bytes() -> None:
    assert decode_event(h("05 4a 00 a0")) == TelephoneEvent(5, False, 10, 160)
    assert decode_event(h("05 ca 00 a0 06 0a 00 a0")) == TelephoneEvent(5, True, 10, 160)
    assert decode_event(memoryview(h("05 0a 00 a0"))) == TelephoneEvent(5, False, 10, 160)


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x0a\x00"])
def test_decode_short_payload(payload: bytes) -> None:
    with pytest.raises(DtmfError) as info:
        decode_event(payload)
    assert str(info.value) == f"telephone-event payload too short: {len(payload)} bytes, need 4"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((256, False, 10, 0), "telephone-event code must be 0-255, got 256"),
        ((-1, False, 10, 0), "telephone-event code must be 0-255, got -1"),
        ((1, False, 64, 0), "telephone-event volume must be 0-63, got 64"),
        ((1, False, -1, 0), "telephone-event volume must be 0-63, got -1"),
        ((1, True, 10, 65536), "telephone-event duration must be 0-65535, got 65536"),
        ((1, True, 10, -1), "telephone-event duration must be 0-65535, got -1"),
    ],
)
def test_encode_errors(args: tuple[int, bool, int, int], message: str) -> None:
    with pytest.raises(DtmfError) as info:
        encode_event(*args)
    assert str(info.value) == message


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 65535))
def test_encode_decode_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    payload = encode_event(event, end, volume, duration)
    assert len(payload) == 4
    assert decode_event(payload) == TelephoneEvent(event, end, volume, duration)


# --- send schedules -----------------------------------------------------------------------


def durations(packets: tuple[ScheduledPacket, ...] | list[ScheduledPacket]) -> list[int]:
    return [decode_event(p.payload).duration for p in packets]


def test_schedule_one_digit() -> None:
    packets = schedule_digits("1")
    assert [p.offset_ms for p in packets] == [0, 20, 40, 60, 80, 100, 120]
    assert durations(packets) == [160, 320, 480, 640, 800, 800, 800]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert [p.new_event for p in packets] == [True] + [False] * 6
    assert [p.end for p in packets] == [False] * 4 + [True] * 3
    assert {p.timestamp_offset for p in packets} == {0}
    assert {p.digit for p in packets} == {"1"}
    assert packets[0].payload == h("01 0a 00 a0")
    assert packets[4].payload == packets[5].payload == packets[6].payload == h("01 8a 03 20")


def test_schedule_two_digits() -> None:
    packets = schedule_digits("#a", tone_ms=60, pause_ms=90, volume=7)
    first, second = packets[:5], packets[5:]
    assert [p.offset_ms for p in first] == [0, 20, 40, 60, 80]
    assert [p.offset_ms for p in second] == [150, 170, 190, 210, 230]
    assert durations(second) == [160, 320, 480, 480, 480]
    assert {p.timestamp_offset for p in first} == {0}
    assert {p.timestamp_offset for p in second} == {150 * 8}
    assert [p.marker for p in second] == [True, False, False, False, False]
    assert [decode_event(p.payload).event for p in packets] == [11] * 5 + [12] * 5
    assert {decode_event(p.payload).volume for p in packets} == {7}
    assert {p.digit for p in second} == {"A"}


def test_schedule_tone_not_a_multiple_of_the_interval() -> None:
    packets = schedule_digits("9", tone_ms=50)
    assert [p.offset_ms for p in packets] == [0, 20, 40, 60, 80]
    assert durations(packets) == [160, 320, 400, 400, 400]
    assert [p.end for p in packets] == [False, False, True, True, True]


def test_schedule_end_repeats_never_fall_after_the_next_press() -> None:
    packets = schedule_digits("12", tone_ms=40, pause_ms=10)
    assert [(p.offset_ms, p.digit, p.end) for p in packets] == [
        (0, "1", False),
        (20, "1", True),
        (40, "1", True),
        (50, "1", True),  # would be 60; sent with the next press's first packet
        (50, "2", False),
        (70, "2", True),
        (90, "2", True),
        (110, "2", True),
    ]


def test_schedule_longest_tone_and_other_rates() -> None:
    assert durations(schedule_digits("0", tone_ms=8191))[-1] == 65528
    packets = schedule_digits("0", tone_ms=40, pause_ms=10, clock_rate=16000)
    assert durations(packets) == [320, 640, 640, 640]
    assert schedule_digits("") == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digits": "1x"}, "invalid DTMF digit 'x': expected one of 0-9 * # A-D"),
        ({"tone_ms": 0}, "DTMF tone duration must be 1-8191 ms, got 0 ms"),
        ({"tone_ms": 8192}, "DTMF tone duration must be 1-8191 ms, got 8192 ms"),
        ({"pause_ms": -1}, "DTMF pause must not be negative, got -1 ms"),
        ({"interval_ms": 0}, "DTMF packet interval must be at least 1 ms, got 0"),
        ({"volume": 64}, "telephone-event volume must be 0-63, got 64"),
        ({"clock_rate": 0}, "telephone-event clock rate must be positive, got 0"),
    ],
)
def test_schedule_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"digits": "1", **kwargs}
    with pytest.raises(DtmfError) as info:
        schedule_digits(**args)  # type: ignore[arg-type]
    assert str(info.value) == message


@settings(max_examples=200)
@given(
    st.text(DIGITS, min_size=1, max_size=6),
    st.integers(1, 400),
    st.integers(0, 200),
    st.integers(5, 60),
)
def test_schedule_invariants(digits: str, tone_ms: int, pause_ms: int, interval_ms: int) -> None:
    packets = schedule_digits(digits, tone_ms=tone_ms, pause_ms=pause_ms, interval_ms=interval_ms)
    offsets = [p.offset_ms for p in packets]
    assert offsets == sorted(offsets)
    by_press: dict[int, list[ScheduledPacket]] = {}
    for packet in packets:
        by_press.setdefault(packet.timestamp_offset, []).append(packet)
    assert len(by_press) == len(digits)
    for index, (timestamp, press) in enumerate(sorted(by_press.items())):
        start = index * (tone_ms + pause_ms)
        assert timestamp == start * 8
        assert press[0].offset_ms == start
        assert [p.marker for p in press] == [True] + [False] * (len(press) - 1)
        assert [p.new_event for p in press] == [p.marker for p in press]
        events = [decode_event(p.payload) for p in press]
        assert {e.event for e in events} == {digit_to_event(digits[index])}
        lengths = [e.duration for e in events]
        assert lengths == sorted(lengths)
        assert lengths[-1] == tone_ms * 8
        assert [e.end for e in events][-3:] == [True] * 3
        assert sum(e.end for e in events) == 3
        assert len({p.payload for p in press[-3:]}) == 1


def test_sender_hands_out_packets_on_a_20_ms_clock() -> None:
    sender = DtmfEventSender("12")
    assert sender.last_offset_ms == 320
    assert not sender.done
    sent: list[ScheduledPacket] = []
    ticks = 0
    while not sender.done:
        due = sender.next_packets(ticks * 20)
        assert all(p.offset_ms <= ticks * 20 for p in due)
        sent += due
        ticks += 1
    assert tuple(sent) == sender.packets
    assert ticks == 17
    assert sender.next_packets(10_000) == []


def test_sender_late_tick_returns_every_packet_due() -> None:
    sender = DtmfEventSender("5", tone_ms=100)
    assert [p.offset_ms for p in sender.next_packets(0)] == [0]
    assert [p.offset_ms for p in sender.next_packets(65)] == [20, 40, 60]
    assert sender.next_packets(65) == []
    assert [p.offset_ms for p in sender.next_packets(119.5)] == [80, 100]
    assert not sender.done
    assert len(sender.next_packets(120)) == 1
    assert sender.done
    assert DtmfEventSender("").done
    assert DtmfEventSender("").last_offset_ms == 0


# --- the event receiver -------------------------------------------------------------------


def test_sender_to_receiver() -> None:
    sender = DtmfEventSender("159#*0D")
    receiver = DtmfEventReceiver()
    base = 0xFFFFF000  # the RTP timestamp wraps during the sending
    got: list[DtmfDigit] = []
    for tick in range(200):
        for packet in sender.next_packets(tick * 20):
            timestamp = (base + packet.timestamp_offset) & 0xFFFFFFFF
            got += receiver.feed(timestamp, packet.payload, packet.marker, tick * 0.02)
    assert "".join(d.digit for d in got) == "159#*0D"
    assert [round(d.at, 2) for d in got] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]
    assert {d.source for d in got} == {"rfc4733"}
    assert {d.duration_ms for d in got} == {None}


def read_pcap_udp(path: Path) -> list[bytes]:
    """UDP payloads of a classic little- or big-endian Ethernet pcap (test helper)."""
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    assert struct.unpack(endian + "I", data[:4])[0] == 0xA1B2C3D4
    assert struct.unpack_from(endian + "I", data, 20)[0] == 1  # LINKTYPE_ETHERNET
    payloads = []
    offset = 24
    while offset < len(data):
        _, _, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        assert frame[12:14] == b"\x08\x00"  # IPv4
        ip_header = (frame[14] & 0x0F) * 4
        assert frame[14 + 9] == 17  # UDP
        payloads.append(frame[14 + ip_header + 8 :])
    return payloads


@pytest.mark.skipif(not SIPP_PCAP.exists(), reason="SIPp's pcap files are not installed")
def test_receiver_on_sipp_capture() -> None:
    receiver = DtmfEventReceiver()
    got: list[DtmfDigit] = []
    packets = [RtpPacket.parse(udp) for udp in read_pcap_udp(SIPP_PCAP)]
    assert len(packets) == 10
    assert {p.payload_type for p in packets} == {101}
    for index, packet in enumerate(packets):
        got += receiver.feed(packet.timestamp, packet.payload, packet.marker, index * 0.02)
    assert got == [DtmfDigit("1", "rfc4733", 0.0)]
    # The same capture again is the same press: nothing new.
    for packet in packets:
        assert receiver.feed(packet.timestamp, packet.payload, packet.marker, 1.0) == []


def test_receiver_reports_on_whichever_packet_arrives_first() -> None:
    receiver = DtmfEventReceiver()
    # start lost: the first packet seen is an update without the marker
    assert receiver.feed(1000, encode_event(7, False, 10, 480), False, 1.0) == [
        DtmfDigit("7", "rfc4733", 1.0)
    ]
    # a press whose updates are all lost: reported on its end packet, with its length
    end = encode_event(8, True, 10, 800)
    assert receiver.feed(3000, end, False, 2.0) == [DtmfDigit("8", "rfc4733", 2.0, 100)]
    assert receiver.feed(3000, end, False, 2.02) == []
    assert receiver.feed(3000, end, False, 2.04) == []


def test_receiver_same_key_twice_is_two_presses() -> None:
    receiver = DtmfEventReceiver()
    one = encode_event(1, False, 10, 160)
    assert len(receiver.feed(1000, one, True, 0.0)) == 1
    assert receiver.feed(1000, one, True, 0.0) == []  # duplicate
    # the second press: all its end packets lost, and then a third press
    assert len(receiver.feed(2600, one, True, 0.2)) == 1
    assert len(receiver.feed(4200, encode_event(1, False, 10, 160), True, 0.4)) == 1


def test_receiver_ignores_stale_packets_and_accepts_a_restarted_stream() -> None:
    receiver = DtmfEventReceiver()
    assert len(receiver.feed(1_000_000, encode_event(2, False, 10, 160), True, 0.0)) == 1
    assert len(receiver.feed(1_002_000, encode_event(3, False, 10, 160), True, 0.3)) == 1
    # a late packet of a press that was never seen, older than the newest: out of order
    assert receiver.feed(1_001_000, encode_event(4, True, 10, 800), False, 0.4) == []
    # a timestamp far older (more than a minute) means the sender started over
    assert receiver.feed(1_000, encode_event(5, False, 10, 160), True, 0.5) == [
        DtmfDigit("5", "rfc4733", 0.5)
    ]


def test_receiver_timestamp_wrap() -> None:
    receiver = DtmfEventReceiver()
    assert len(receiver.feed(0xFFFFFF00, encode_event(1, False, 10, 160), True, 0.0)) == 1
    assert receiver.feed(0xFFFFFF00, encode_event(1, True, 10, 800), False, 0.1) == []
    assert len(receiver.feed(0x00000500, encode_event(2, False, 10, 160), True, 0.2)) == 1
    assert receiver.feed(0xFFFFFF00, encode_event(1, True, 10, 800), False, 0.3) == []


def test_receiver_long_press_segments_are_one_press() -> None:
    # RFC 4733 2.5.1.3: past 65535 samples the sender starts a new segment without a marker.
    receiver = DtmfEventReceiver()
    assert len(receiver.feed(10_000, encode_event(0, False, 10, 65_000), True, 0.0)) == 1
    assert receiver.feed(10_000, encode_event(0, False, 10, 65_535), False, 8.2) == []
    assert receiver.feed(10_000 + 65_535, encode_event(0, False, 10, 160), False, 8.22) == []
    assert receiver.feed(10_000 + 65_535, encode_event(0, True, 10, 800), False, 8.3) == []
    # after that end, the same key with a marker is a new press
    assert len(receiver.feed(80_000, encode_event(0, False, 10, 160), True, 9.0)) == 1


def test_receiver_segment_rule_needs_an_unfinished_press_of_the_same_key() -> None:
    receiver = DtmfEventReceiver()
    receiver.feed(10_000, encode_event(0, True, 10, 65_535), False, 0.0)
    # the previous press ended: a press at the segment distance is new
    assert len(receiver.feed(10_000 + 65_535, encode_event(0, False, 10, 160), False, 9)) == 1
    # another key at the segment distance is new too
    assert len(receiver.feed(10_000 + 2 * 65_535, encode_event(6, False, 10, 160), False, 17)) == 1


def test_receiver_skips_malformed_and_non_key_events() -> None:
    receiver = DtmfEventReceiver()
    assert receiver.feed(1000, b"\x01\x0a", True, 0.0) == []
    assert receiver.malformed == 1
    assert receiver.feed(1000, encode_event(16, False, 10, 160), True, 0.0) == []  # flash
    assert receiver.feed(1000, encode_event(1, False, 10, 160), True, 0.0) == [
        DtmfDigit("1", "rfc4733", 0.0)
    ]


def test_receiver_reset() -> None:
    receiver = DtmfEventReceiver()
    payload = encode_event(4, False, 10, 160)
    assert len(receiver.feed(1000, payload, True, 0.0)) == 1
    receiver.reset()
    assert len(receiver.feed(1000, payload, True, 1.0)) == 1


@settings(max_examples=200)
@given(st.data())
def test_receiver_reports_each_press_once_despite_loss_duplicates_and_reordering(
    data: st.DataObject,
) -> None:
    digits = data.draw(st.text(DIGITS, min_size=1, max_size=8), label="digits")
    packets = schedule_digits(digits, tone_ms=data.draw(st.integers(40, 200)), pause_ms=60)
    base = data.draw(st.integers(0, 0xFFFFFFFF), label="base")
    presses: dict[int, list[ScheduledPacket]] = {}
    for packet in packets:
        presses.setdefault(packet.timestamp_offset, []).append(packet)
    arrivals: list[ScheduledPacket] = []
    for press in presses.values():  # presses keep their order, packets within do not
        kept = data.draw(st.lists(st.sampled_from(press), min_size=1, max_size=12))
        arrivals += data.draw(st.permutations(kept))
    receiver = DtmfEventReceiver()
    got: list[DtmfDigit] = []
    for packet in arrivals:
        timestamp = (base + packet.timestamp_offset) & 0xFFFFFFFF
        got += receiver.feed(timestamp, packet.payload, packet.marker, 0.0)
    assert "".join(d.digit for d in got) == digits


# --- tones --------------------------------------------------------------------------------


def spectrum_peaks(pcm: Pcm) -> list[float]:
    magnitude = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    frequencies = np.fft.rfftfreq(len(pcm), 1 / RATE)
    return sorted(float(f) for f in frequencies[np.argsort(magnitude)[-2:]])


@pytest.mark.parametrize(
    ("digit", "low", "high"),
    [("1", 697, 1209), ("5", 770, 1336), ("9", 852, 1477), ("D", 941, 1633), ("*", 941, 1209)],
)
def test_tone_frequencies(digit: str, low: float, high: float) -> None:
    pcm = dtmf_tone(digit, 1.0)
    assert pcm.dtype == np.int16
    assert len(pcm) == 8000
    assert spectrum_peaks(pcm) == [low, high]


def test_tone_level() -> None:
    for level in (-6.0, -8.0, -20.0):
        pcm = dtmf_tone("0", 1.0, level_dbfs=level)
        per_tone = 32768 * 10 ** (level / 20)
        rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
        assert rms == pytest.approx(per_tone, rel=0.01)  # two tones: rms = per-tone peak
        assert np.abs(pcm.astype(np.int32)).max() <= 2 * per_tone + 1
    assert len(dtmf_tone("1", 0.05, rate=16000)) == 800
    assert len(dtmf_tone("1", 0.0)) == 0


def test_tone_errors() -> None:
    with pytest.raises(DtmfError, match=r"^DTMF tone level must be at most -6 dBFS per tone"):
        dtmf_tone("1", 0.1, level_dbfs=-5.0)
    with pytest.raises(DtmfError, match=r"^DTMF tone duration must not be negative, got -1 s$"):
        dtmf_tone("1", -1)
    with pytest.raises(DtmfError, match=r"^invalid DTMF digit 'x'"):
        dtmf_tone("x", 0.1)


def test_tones_sequence() -> None:
    pcm = dtmf_tones("123", tone_ms=50, pause_ms=30)
    assert len(pcm) == 3 * 400 + 2 * 240
    assert not pcm[400:640].any()
    assert np.array_equal(pcm[640:1040], dtmf_tone("2", 0.05))
    assert len(dtmf_tones("")) == 0


# --- the in-band detector -----------------------------------------------------------------


def detect(pcm: Pcm, chunk: int = 160) -> list[DtmfDigit]:
    detector = InbandDtmfDetector()
    found: list[DtmfDigit] = []
    for start in range(0, len(pcm), chunk):
        found += detector.feed(pcm[start : start + chunk], start / RATE)
    return found


def keys(pcm: Pcm, chunk: int = 160) -> str:
    return "".join(d.digit for d in detect(pcm, chunk))


def via_ulaw(pcm: Pcm) -> Pcm:
    return ulaw_decode(ulaw_encode(pcm))


def via_alaw(pcm: Pcm) -> Pcm:
    return alaw_decode(alaw_encode(pcm))


def clip(signal: npt.NDArray[np.floating[Any]]) -> Pcm:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


ALL_KEYS = "123A456B789C*0#D"
SECONDS = np.arange(5 * RATE) / RATE


@pytest.mark.parametrize("level", [-8.0, -20.0, -30.0])
def test_detects_every_key_50_ms_on_50_ms_off(level: float) -> None:
    pcm = dtmf_tones(ALL_KEYS, tone_ms=50, pause_ms=50, level_dbfs=level)
    assert keys(pcm) == ALL_KEYS
    assert keys(via_ulaw(pcm)) == ALL_KEYS
    assert keys(via_alaw(pcm)) == ALL_KEYS


@pytest.mark.parametrize("chunk", [1, 7, 80, 105, 159, 160, 161, 333, 1000, 100_000])
def test_detects_whatever_the_chunk_size(chunk: int) -> None:
    pcm = via_ulaw(dtmf_tones("2580#", tone_ms=50, pause_ms=50, level_dbfs=-20))
    assert keys(pcm, chunk) == "2580#"


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 400), st.text(DIGITS, min_size=1, max_size=5))
def test_detects_at_any_alignment(lead: int, digits: str) -> None:
    pcm = np.concatenate(
        (np.zeros(lead, np.int16), dtmf_tones(digits, tone_ms=50, pause_ms=50, level_dbfs=-20))
    )
    assert keys(via_ulaw(pcm)) == digits


def test_reports_at_the_time_of_the_chunk_that_completes_the_press() -> None:
    pcm = np.concatenate((np.zeros(800, np.int16), dtmf_tone("7", 0.2)))
    found = detect(pcm)
    assert len(found) == 1
    assert found[0].digit == "7"
    assert found[0].source == "inband"
    assert found[0].duration_ms is None
    assert 0.12 <= found[0].at <= 0.16  # 100 ms of silence, then 40-60 ms of tone


def test_long_press_is_reported_once_even_with_a_dropout() -> None:
    pcm = dtmf_tone("6", 1.0).copy()
    assert keys(pcm) == "6"
    pcm[3000:3160] = 0  # a 20 ms packet lost in the middle
    assert keys(via_ulaw(pcm)) == "6"


def test_same_key_needs_a_gap() -> None:
    assert keys(dtmf_tones("55", tone_ms=60, pause_ms=50)) == "55"
    assert keys(dtmf_tones("55", tone_ms=60, pause_ms=15)) == "5"
    assert keys(dtmf_tones("56", tone_ms=60, pause_ms=0)) == "56"


def test_too_short_or_too_quiet_tones_are_ignored() -> None:
    assert keys(dtmf_tones("1234", tone_ms=20, pause_ms=100)) == ""
    assert keys(dtmf_tones("1234", level_dbfs=-46)) == ""


def two_tones(low: float, high: float, low_peak: float, high_peak: float) -> Pcm:
    t = SECONDS[:1600]
    return clip(low_peak * np.sin(2 * np.pi * low * t) + high_peak * np.sin(2 * np.pi * high * t))


@pytest.mark.parametrize(
    ("twist_db", "expected"),
    [(-10, ""), (-6, "5"), (0, "5"), (3, "5"), (6, "")],  # high group relative to low
)
def test_twist_limits(twist_db: float, expected: str) -> None:
    assert keys(via_ulaw(two_tones(770, 1336, 3000, 3000 * 10 ** (twist_db / 20)))) == expected


@pytest.mark.parametrize(
    ("deviation", "expected"), [(-3.5, ""), (-1.0, "1"), (0.0, "1"), (1.0, "1"), (3.5, "")]
)
def test_frequency_tolerance(deviation: float, expected: str) -> None:
    factor = 1 + deviation / 100
    assert keys(via_ulaw(two_tones(697 * factor, 1209 * factor, 3000, 3000))) == expected


VOWELS = ((700, 1220, 2600), (300, 870, 2240), (520, 1190, 2390), (270, 2290, 3010))


def resonate(signal: list[float], formant: float) -> list[float]:
    """A two-pole resonator of 90 Hz bandwidth (a crude vocal-tract formant)."""
    radius = np.exp(-np.pi * 90 / RATE)
    a1 = 2 * radius * np.cos(2 * np.pi * formant / RATE)
    a2 = -radius * radius
    out = []
    y1 = y2 = 0.0
    for x in signal:
        y = x + a1 * y1 + a2 * y2
        out.append(y)
        y1, y2 = y, y1
    return out


def speech_like(seconds: float, seed: int) -> Pcm:
    """Voiced syllables: a gliding, jittering glottal pulse train through vowel formants."""
    rng = np.random.default_rng(seed)
    count = int(seconds * RATE)
    excitation = np.zeros(count)
    position = 0.0
    while position < count:
        excitation[int(position)] = 1.0
        pitch = 140 + 50 * np.sin(position / RATE * 3) + rng.normal(0, 4)
        position += RATE / pitch
    excitation += rng.normal(0, 0.05, count)  # breath
    voiced: list[float] = []
    while len(voiced) < count:
        length = int(rng.integers(1200, 2400))  # 150-300 ms syllables
        segment = excitation[len(voiced) : len(voiced) + length].tolist()
        for formant in VOWELS[int(rng.integers(len(VOWELS)))]:
            segment = resonate(segment, formant)
        envelope = np.sin(np.pi * np.arange(len(segment)) / len(segment)) ** 0.5
        voiced += (np.array(segment) * envelope).tolist()
    signal = np.array(voiced)
    return clip(signal / np.abs(signal).max() * 20000)


@pytest.mark.parametrize(
    "name",
    ["silence", "white noise", "440 Hz", "1000 Hz", "697+1500 Hz", "speech-like", "hold music"],
)
def test_no_false_detections(name: str) -> None:
    rng = np.random.default_rng(7)
    t = SECONDS
    signals: dict[str, Pcm] = {
        "silence": np.zeros(len(t), np.int16),
        "white noise": clip(rng.normal(0, 4000, len(t))),
        "440 Hz": clip(10000 * np.sin(2 * np.pi * 440 * t)),
        "1000 Hz": clip(10000 * np.sin(2 * np.pi * 1000 * t)),
        "697+1500 Hz": clip(6000 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1500 * t))),
    }
    if name == "speech-like":
        signal = speech_like(3.0, seed=1)
    elif name == "hold music":
        from pypbx.media.sounds import default_hold_music

        signal = default_hold_music()
    else:
        signal = signals[name]
    for scale in (1.0, 0.1):
        pcm = clip(signal * scale)
        assert keys(pcm) == ""
        assert keys(via_ulaw(pcm)) == ""


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_no_false_detections_on_synthetic_speech() -> None:
    soundfile = pytest.importorskip("soundfile")
    soxr = pytest.importorskip("soxr")
    text = "Thank you for calling. Press one for sales, two for support, or hold. 4 5 6 7 8 9."
    wav = subprocess.run(
        ["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=30
    ).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    pcm = clip(soxr.resample(audio, rate, RATE) * 30000)
    assert len(pcm) > 3 * RATE
    assert keys(via_ulaw(pcm)) == ""
    # and keys pressed while the prompt plays are still found
    tones = dtmf_tones("42", tone_ms=100, pause_ms=100, level_dbfs=-8)
    mixed = pcm[: len(tones)].astype(np.float64) * 0.1 + tones
    assert keys(via_ulaw(clip(mixed))) == "42"


def test_tones_in_noise() -> None:
    rng = np.random.default_rng(3)
    tones = dtmf_tones("2468", level_dbfs=-20).astype(np.float64)
    noise = rng.normal(0, np.sqrt(np.mean(tones**2) / 10), len(tones))  # 10 dB SNR
    assert keys(via_ulaw(clip(tones + noise))) == "2468"
