"""RTCP (RFC 3550 section 6) fix-ups for relaying between call legs, sans-I/O.

The PBX gives each phone its own outgoing SSRC, so reports relayed unchanged would talk about
SSRCs the far phone has never seen. `rewrite_rtcp` walks a compound packet and maps every SSRC
field it knows (sender, report blocks, SDES chunks, feedback media source) through a table; the
loss, jitter and round-trip fields stay meaningful because they do not depend on the numbering.
BYE packets are dropped: one phone leaving says nothing about the PBX's stream toward the other,
which may carry on (transfer, music on hold).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = ["RTCP_BYE", "RTCP_RR", "RTCP_SDES", "RTCP_SR", "RtcpError", "rewrite_rtcp"]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
_RTPFB = 205
_PSFB = 206

_HEADER = struct.Struct("!BBH")
_WORD = struct.Struct("!I")
_REPORT_BLOCK_SIZE = 24


class RtcpError(ValueError):
    """A datagram that is not a well-formed (compound) RTCP packet."""


def rewrite_rtcp(data: bytes, ssrc_map: Mapping[int, int]) -> bytes | None:
    """The compound packet with SSRCs mapped and BYEs removed; None if nothing is left."""
    out = bytearray()
    offset = 0
    size = len(data)
    if size < _HEADER.size:
        raise RtcpError(f"RTCP packet too short: {size} bytes, the header needs 4")
    while offset < size:
        if size - offset < _HEADER.size:
            raise RtcpError(f"RTCP packet truncated at byte {offset}")
        first, packet_type, words = _HEADER.unpack_from(data, offset)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version must be 2, got {first >> 6}")
        length = 4 * (words + 1)
        if offset + length > size:
            raise RtcpError(
                f"RTCP packet type {packet_type} announces {length} bytes, {size - offset} present"
            )
        if packet_type != RTCP_BYE:
            packet = bytearray(data[offset : offset + length])
            _rewrite_packet(packet, first & 0x1F, packet_type, ssrc_map)
            out += packet
        offset += length
    return bytes(out) if out else None


def _rewrite_packet(
    packet: bytearray, count: int, packet_type: int, ssrc_map: Mapping[int, int]
) -> None:
    if packet_type == RTCP_SDES:
        _rewrite_sdes(packet, count, ssrc_map)
        return
    if len(packet) >= 8:
        _map_word(packet, 4, ssrc_map)  # sender SSRC: same place in SR, RR, APP, RTPFB, PSFB, XR
    if packet_type in (RTCP_SR, RTCP_RR):
        first_block = 28 if packet_type == RTCP_SR else 8
        end = first_block + _REPORT_BLOCK_SIZE * count
        if end > len(packet):
            raise RtcpError(f"RTCP report with {count} blocks truncated: {len(packet)} bytes")
        for block in range(first_block, end, _REPORT_BLOCK_SIZE):
            _map_word(packet, block, ssrc_map)
    elif packet_type in (_RTPFB, _PSFB) and len(packet) >= 12:
        _map_word(packet, 8, ssrc_map)  # media source SSRC


def _rewrite_sdes(packet: bytearray, count: int, ssrc_map: Mapping[int, int]) -> None:
    offset = 4
    for _ in range(count):
        if offset + 4 > len(packet):
            raise RtcpError("RTCP SDES chunk truncated")
        _map_word(packet, offset, ssrc_map)
        offset += 4
        while True:  # items: type, length, text; a zero type ends the chunk
            if offset >= len(packet):
                raise RtcpError("RTCP SDES chunk not terminated")
            if packet[offset] == 0:
                offset = (offset + 4) & ~3  # the terminator plus padding to a word boundary
                break
            if offset + 2 > len(packet):
                raise RtcpError("RTCP SDES item truncated")
            offset += 2 + packet[offset + 1]


def _map_word(packet: bytearray, offset: int, ssrc_map: Mapping[int, int]) -> None:
    (ssrc,) = _WORD.unpack_from(packet, offset)
    mapped = ssrc_map.get(ssrc)
    if mapped is not None:
        _WORD.pack_into(packet, offset, mapped)
