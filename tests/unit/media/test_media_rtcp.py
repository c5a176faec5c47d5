"""RTCP SSRC rewriting for relayed reports."""

from __future__ import annotations

import struct

import pytest

from pypbx.media.rtcp import RtcpError, rewrite_rtcp

A, B, X, Y = 0x0A0A0A0A, 0x0B0B0B0B, 0x0C0C0C0C, 0x0D0D0D0D
MAP = {A: X, B: Y}


def report_block(ssrc: int) -> bytes:
    return struct.pack("!IIIIII", ssrc, 0x05000010, 0x0001_0203, 17, 0x11223344, 0x00010000)


def sr(sender: int, *blocks: int) -> bytes:
    body = struct.pack("!IIIIII", sender, 0xE0000000, 0x12345678, 160000, 1000, 160000)
    body += b"".join(report_block(b) for b in blocks)
    return struct.pack("!BBH", 0x80 | len(blocks), 200, len(body) // 4) + body


def rr(sender: int, *blocks: int) -> bytes:
    body = struct.pack("!I", sender) + b"".join(report_block(b) for b in blocks)
    return struct.pack("!BBH", 0x80 | len(blocks), 201, len(body) // 4) + body


def sdes(*chunks: tuple[int, bytes]) -> bytes:
    body = b""
    for ssrc, cname in chunks:
        chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + b"\x00"
        body += chunk + b"\x00" * (-len(chunk) % 4)
    return struct.pack("!BBH", 0x80 | len(chunks), 202, len(body) // 4) + body


def bye(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x81, 203, 1, ssrc)


def test_sr_sender_and_blocks_are_mapped() -> None:
    original = sr(A, B, 0x99)
    out = rewrite_rtcp(original, MAP)
    assert out == sr(X, Y, 0x99)
    assert len(out) == len(original)


def test_rr_and_sdes_compound() -> None:
    original = rr(A, B) + sdes((A, b"alice@pbx"), (0x77, b"ab"))
    assert rewrite_rtcp(original, MAP) == rr(X, Y) + sdes((X, b"alice@pbx"), (0x77, b"ab"))


def test_bye_is_dropped() -> None:
    assert rewrite_rtcp(rr(A) + sdes((A, b"c")) + bye(A), MAP) == rr(X) + sdes((X, b"c"))
    assert rewrite_rtcp(bye(A), MAP) is None


def test_feedback_media_source_is_mapped() -> None:
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, A, B, 100, 0)
    assert rewrite_rtcp(nack, MAP) == struct.pack("!BBHIIHH", 0x81, 205, 3, X, Y, 100, 0)


def test_unknown_ssrcs_and_types_pass() -> None:
    app = struct.pack("!BBHI4sI", 0x80, 204, 3, 0x42, b"TEST", 7)
    assert rewrite_rtcp(app + rr(0x42), MAP) == app + rr(0x42)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc9", "RTCP packet too short: 2 bytes, the header needs 4"),
        (b"\x40\xc9\x00\x00", "RTCP version must be 2, got 1"),
        (rr(A)[:6], "RTCP packet type 201 announces 8 bytes, 6 present"),
        (rr(A) + b"\x80\xc9", "RTCP packet truncated at byte 8"),
        (
            b"\x81\xc9\x00\x01" + struct.pack("!I", A),
            "RTCP report with 1 blocks truncated: 8 bytes",
        ),
        (b"\x81\xca\x00\x00", "RTCP SDES chunk truncated"),
        (
            b"\x81\xca\x00\x02" + struct.pack("!I", A) + b"\x01\x09ab",
            "RTCP SDES chunk not terminated",
        ),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError) as info:
        rewrite_rtcp(data, MAP)
    assert str(info.value) == message
