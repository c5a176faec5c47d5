"""RTP packets (RFC 3550), sans-I/O.

`RtpPacket` is the convenient, fully parsed view used by tests, players and recorders. The relay
path in `pypbx.media.bridge` deliberately does not use it: at tens of thousands of packets per
second, building an object per packet costs more than rewriting the few header bytes in place.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["RTP_HEADER", "RTP_VERSION", "RtpError", "RtpPacket", "is_rtcp"]

RTP_VERSION = 2

# Bytes 0-11 of every RTP packet: V/P/X/CC, M/PT, sequence, timestamp, SSRC.
RTP_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_WORD = struct.Struct("!I")


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet, or a packet that cannot be serialized."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet; padding is stripped on parse and never added on serialize."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: list[int] = field(default_factory=list)
    # (profile-defined 16 bits, extension data whose length is a multiple of 4)
    extension: tuple[int, bytes] | None = None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        size = len(data)
        if size < RTP_HEADER.size:
            raise RtpError(f"RTP packet too short: {size} bytes, the header needs 12")
        first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version must be 2, got {version}")
        csrc_count = first & 0x0F
        offset = RTP_HEADER.size + 4 * csrc_count
        if offset > size:
            raise RtpError(
                f"RTP packet too short for {csrc_count} CSRCs: {size} bytes, need {offset}"
            )
        csrcs = [_WORD.unpack_from(data, RTP_HEADER.size + 4 * i)[0] for i in range(csrc_count)]
        extension = None
        if first & 0x10:
            if offset + _EXTENSION_HEADER.size > size:
                raise RtpError("RTP header extension truncated: no room for its 4-byte header")
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            offset += _EXTENSION_HEADER.size
            end = offset + 4 * words
            if end > size:
                raise RtpError(
                    f"RTP header extension truncated: {words} words announced, "
                    f"{(size - offset) // 4} present"
                )
            extension = (profile, bytes(data[offset:end]))
            offset = end
        end = size
        if first & 0x20:
            padding = data[-1]
            if padding == 0:
                raise RtpError("RTP padding length must not be 0")
            if padding > size - offset:
                raise RtpError(
                    f"RTP padding length {padding} exceeds the {size - offset} bytes "
                    "after the header"
                )
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrcs=csrcs,
            extension=extension,
        )

    def serialize(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"RTP payload type {self.payload_type} is outside 0-127")
        if not 0 <= self.sequence <= 0xFFFF:
            raise RtpError(f"RTP sequence number {self.sequence} is outside 0-65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise RtpError(f"RTP timestamp {self.timestamp} does not fit 32 bits")
        if not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise RtpError(f"RTP SSRC {self.ssrc} does not fit 32 bits")
        if len(self.csrcs) > 15:
            raise RtpError(f"RTP allows at most 15 CSRCs, got {len(self.csrcs)}")
        first = (RTP_VERSION << 6) | len(self.csrcs)
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [RTP_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        for csrc in self.csrcs:
            if not 0 <= csrc <= 0xFFFFFFFF:
                raise RtpError(f"RTP CSRC {csrc} does not fit 32 bits")
            parts.append(_WORD.pack(csrc))
        if self.extension is not None:
            profile, body = self.extension
            if not 0 <= profile <= 0xFFFF:
                raise RtpError(f"RTP extension profile {profile} does not fit 16 bits")
            if len(body) % 4:
                raise RtpError(f"RTP extension data must be a multiple of 4 bytes, got {len(body)}")
            if len(body) // 4 > 0xFFFF:
                raise RtpError("RTP extension data too long")
            parts.append(_EXTENSION_HEADER.pack(profile, len(body) // 4))
            parts.append(body)
        parts.append(self.payload)
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on a multiplexed port is RTCP rather than RTP (RFC 5761 section 4).

    RTCP packet types 200-204 read as RTP payload types 72-76 once the marker bit is masked;
    RFC 5761 keeps that range free of RTP payload types for exactly this test.
    """
    return len(data) >= 2 and 72 <= (data[1] & 0x7F) <= 76
