"""RTP packet vectors: parse -> fields -> serialize, and malformed packets with exact errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypbx.media.rtp import RtpError, RtpPacket, is_rtcp

HEADER = "80 00 00 01 00 00 00 a0 de ad be ef"  # PT 0, seq 1, ts 160, SSRC 0xdeadbeef


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_minimal_packet() -> None:
    data = h(HEADER + " 61 62 63 64")
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(
        payload_type=0, sequence=1, timestamp=160, ssrc=0xDEADBEEF, payload=b"abcd"
    )
    assert packet.marker is False
    assert packet.csrcs == []
    assert packet.extension is None
    assert packet.serialize() == data


def test_marker_and_dynamic_payload_type() -> None:
    data = h("80 e5 ff ff ff ff ff ff 00 00 00 01 05 0a 00 a0")
    packet = RtpPacket.parse(data)
    assert (packet.marker, packet.payload_type) == (True, 101)
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (0xFFFF, 0xFFFFFFFF, 1)
    assert packet.payload == h("05 0a 00 a0")
    assert packet.serialize() == data


def test_csrcs() -> None:
    data = h("82 08 12 34 00 01 00 00 00 00 00 07  00 00 00 0a  ff ff ff fe  d5 d5")
    packet = RtpPacket.parse(data)
    assert packet.payload_type == 8
    assert packet.csrcs == [10, 0xFFFFFFFE]
    assert packet.payload == h("d5 d5")
    assert packet.serialize() == data


def test_header_extension() -> None:
    # RFC 8285 one-byte form: profile 0xBEDE, one word: id 1, len 0 (1 byte) = 0x50, padding
    data = h("90 00 00 02 00 00 01 40 00 00 00 09  be de 00 01  10 50 00 00  ff")
    packet = RtpPacket.parse(data)
    assert packet.extension == (0xBEDE, h("10 50 00 00"))
    assert packet.payload == b"\xff"
    assert packet.serialize() == data


def test_empty_header_extension() -> None:
    data = h("90 00 00 02 00 00 01 40 00 00 00 09  10 00 00 00")
    packet = RtpPacket.parse(data)
    assert packet.extension == (0x1000, b"")
    assert packet.payload == b""
    assert packet.serialize() == data


def test_padding_is_stripped() -> None:
    data = h(HEADER + " 61 62  00 00 03")
    packet = RtpPacket.parse(h("a0" + HEADER[2:] + " 61 62  00 00 03"))
    assert packet.payload == b"ab"
    assert packet.serialize() == h(HEADER + " 61 62")
    # the P bit is what makes the trailing bytes padding
    assert RtpPacket.parse(data).payload == h("61 62 00 00 03")


def test_padding_only_packet() -> None:
    packet = RtpPacket.parse(h("a0" + HEADER[2:] + " 00 00 00 04"))
    assert packet.payload == b""


def test_everything_at_once() -> None:
    data = h(
        "b1 e5 00 07 00 00 0f a0 01 02 03 04"  # P X CC=1 M PT=101
        " 0a 0b 0c 0d"  # CSRC
        " 00 01 00 01 aa bb cc dd"  # extension, one word
        " 01 80 00 a0"  # telephone-event payload
        " 00 02"  # padding
    )
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(
        payload_type=101,
        sequence=7,
        timestamp=4000,
        ssrc=0x01020304,
        payload=h("01 80 00 a0"),
        marker=True,
        csrcs=[0x0A0B0C0D],
        extension=(1, h("aa bb cc dd")),
    )
    assert packet.serialize() == h("91" + data.hex()[2:-4])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet too short: 0 bytes, the header needs 12"),
        (
            h("80 00 00 01 00 00 00 a0 de ad be"),
            "RTP packet too short: 11 bytes, the header needs 12",
        ),
        (h("40" + HEADER[2:]), "RTP version must be 2, got 1"),
        (h("00 01 00 00 21 12 a4 42 00 00 00 00"), "RTP version must be 2, got 0"),  # STUN
        (h("c0" + HEADER[2:]), "RTP version must be 2, got 3"),
        (
            h("82" + HEADER[2:] + " 00 00 00 01"),
            "RTP packet too short for 2 CSRCs: 16 bytes, need 20",
        ),
        (
            h("90" + HEADER[2:] + " be de"),
            "RTP header extension truncated: no room for its 4-byte header",
        ),
        (
            h("90" + HEADER[2:] + " be de 00 02 00 00 00 00"),
            "RTP header extension truncated: 2 words announced, 1 present",
        ),
        (
            h("a0" + HEADER[2:] + " 61 62 05"),
            "RTP padding length 5 exceeds the 3 bytes after the header",
        ),
        (h("a0" + HEADER[2:]), "RTP padding length 239 exceeds the 0 bytes after the header"),
        (h("a0" + HEADER[2:] + " 61 62 00"), "RTP padding length must not be 0"),
        (
            h("b0" + HEADER[2:] + " 00 01 00 00 02"),
            "RTP padding length 2 exceeds the 1 bytes after the header",
        ),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(data)
    assert str(info.value) == message


def test_rtp_error_is_value_error() -> None:
    assert issubclass(RtpError, ValueError)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"payload_type": 128}, "RTP payload type 128 is outside 0-127"),
        ({"payload_type": -1}, "RTP payload type -1 is outside 0-127"),
        ({"sequence": 65536}, "RTP sequence number 65536 is outside 0-65535"),
        ({"timestamp": 1 << 32}, "RTP timestamp 4294967296 does not fit 32 bits"),
        ({"ssrc": -1}, "RTP SSRC -1 does not fit 32 bits"),
        ({"csrcs": list(range(16))}, "RTP allows at most 15 CSRCs, got 16"),
        ({"csrcs": [1 << 32]}, "RTP CSRC 4294967296 does not fit 32 bits"),
        ({"extension": (1, b"abc")}, "RTP extension data must be a multiple of 4 bytes, got 3"),
        ({"extension": (1 << 16, b"")}, "RTP extension profile 65536 does not fit 16 bits"),
    ],
)
def test_serialize_rejects(changes: dict[str, object], message: str) -> None:
    packet = RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0)
    for name, value in changes.items():
        setattr(packet, name, value)
    with pytest.raises(RtpError) as info:
        packet.serialize()
    assert str(info.value) == message


words = st.integers(0, 0xFFFFFFFF)


@given(
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=words,
    ssrc=words,
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(words, max_size=15),
    extension=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
)
def test_round_trip(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrcs: list[int],
    extension: tuple[int, bytes] | None,
) -> None:
    packet = RtpPacket(payload_type, sequence, timestamp, ssrc, payload, marker, csrcs, extension)
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(data).serialize() == data


@given(st.binary(max_size=64))
def test_parse_never_fails_otherwise(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        RtpPacket.parse(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (h("80 c8 00 06"), True),  # SR, 200
        (h("81 c9 00 07"), True),  # RR, 201
        (h("81 ca 00 02"), True),  # SDES, 202
        (h("81 cb 00 01"), True),  # BYE, 203
        (h("80 cc 00 02"), True),  # APP, 204
        (h("80 c7 00 00"), False),  # 199 -> PT 71
        (h("81 cd 00 02"), False),  # RTPFB 205 -> PT 77: outside the RFC 5761 range
        (h("80 48"), True),  # PT 72 without marker reads as RTCP as well
        (h(HEADER), False),
        (h("80 e5"), False),  # marker + 101
        (h("80 80"), False),  # marker + PCMU
        (h("80"), False),
        (b"", False),
    ],
)
def test_is_rtcp(data: bytes, expected: bool) -> None:
    assert is_rtcp(data) is expected
