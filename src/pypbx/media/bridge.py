"""Relaying RTP and RTCP between the two legs of a call.

A `Bridge` is two `RelayDirection`s, one per direction. A direction takes each packet its source
leg receives, rewrites the header bytes in place (payload type of the far leg, the far leg's
output SSRC, sequence and timestamp shifted onto the far leg's continuous output stream) and
sends it; only when the legs use different laws is the payload touched, by `bytes.translate`.
No `RtpPacket` objects are built on this path: it runs for every packet of every call.

Seams for later features:

* hold / an audio source taking over one direction: set `direction.paused = True`, then feed the
  far leg with `RtpEndpoint.send_media(..., writer=player)`. The endpoint's `RtpOutputStream`
  keeps the phone's view continuous across such handovers, and so across re-bridging on transfer.
* recording / DTMF detection: `RtpEndpoint.add_tap()` observes packets without owning the leg.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from pypbx.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from pypbx.media.rtcp import RtcpError, rewrite_rtcp

if TYPE_CHECKING:
    from pypbx.media.endpoint import RtpEndpoint

__all__ = ["Bridge", "CodecSpec", "RelayDirection", "SteadyRelay"]

_log = logging.getLogger(__name__)

# Bytes 2-11 of the RTP header: sequence, timestamp, SSRC.
_SEQ_TS_SSRC = struct.Struct("!HII")
# Bytes 1-11: marker and payload type, then the same; rewritten with one call per packet.
_MPT_SEQ_TS_SSRC = struct.Struct("!BHII")
_EXTENSION_WORDS = struct.Struct("!H")

_CODECS = ("PCMU", "PCMA")


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """What one leg negotiated in SDP: its audio codec and RFC 4733 telephone-event type."""

    payload_type: int
    name: str  # 'PCMU' or 'PCMA'
    telephone_event_pt: int | None = None

    def __post_init__(self) -> None:
        if self.name not in _CODECS:
            raise ValueError(f"unsupported codec {self.name!r}, expected PCMU or PCMA")
        for pt in (self.payload_type, self.telephone_event_pt):
            if pt is not None and not 0 <= pt <= 127:
                raise ValueError(f"payload type {pt} is outside 0-127")
        if self.payload_type == self.telephone_event_pt:
            raise ValueError("audio and telephone-event must use different payload types")

    @property
    def clock_rate(self) -> int:
        return 8000


class SteadyRelay(NamedTuple):
    """A settled direction's rewrite of plain audio packets (see `RelayDirection.steady`)."""

    audio_in: int  # payload type of the source's audio
    audio_out: int  # ... and of the sink's
    ssrc: int  # the source's SSRC the offsets belong to
    sequence_offset: int
    timestamp_offset: int
    table: bytes | None  # law translation, None when both legs use the same law


def _translation(source: CodecSpec, sink: CodecSpec) -> bytes | None:
    if source.name == sink.name:
        return None
    return ULAW_TO_ALAW if source.name == "PCMU" else ALAW_TO_ULAW


class RelayDirection:
    """Relays the packets `source` receives to `sink`, continuing `sink.output`."""

    __slots__ = (
        "_audio_in",
        "_audio_out",
        "_event_in",
        "_event_out",
        "_in_ssrc",
        "_paused",
        "_seq_offset",
        "_table",
        "_ts_offset",
        "dropped",
        "sink",
        "source",
    )

    def __init__(
        self, source: RtpEndpoint, sink: RtpEndpoint, source_codec: CodecSpec, sink_codec: CodecSpec
    ) -> None:
        self.source = source
        self.sink = sink
        self._paused = False
        self.dropped = 0  # packets not relayed: malformed, unknown payload type, no event type
        self._audio_in = source_codec.payload_type
        self._audio_out = sink_codec.payload_type
        self._event_in = source_codec.telephone_event_pt
        self._event_out = sink_codec.telephone_event_pt
        self._table = _translation(source_codec, sink_codec)
        self._in_ssrc: int | None = None  # the source's SSRC the offsets were computed for
        self._seq_offset = 0
        self._ts_offset = 0

    @property
    def paused(self) -> bool:
        """Relaying stopped (hold, or a player owns the sink's stream)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        if value and not self._paused:
            # What follows (a player feeding the sink) must see where the relay left the
            # stream: packets moved by a relay worker come back first.
            self.source.reclaim()
        self._paused = value

    def export_state(self) -> tuple[int | None, int, int]:
        """(input SSRC, sequence offset, timestamp offset): what a relay elsewhere continues."""
        return self._in_ssrc, self._seq_offset, self._ts_offset

    def import_state(self, state: tuple[int | None, int, int]) -> None:
        self._in_ssrc, self._seq_offset, self._ts_offset = state

    @property
    def input_ssrc(self) -> int | None:
        """The SSRC the source phone sends with, once a packet has been relayed."""
        return self._in_ssrc

    def steady(self) -> SteadyRelay | None:
        """What `relay` does to the next audio packet from the current SSRC, if it is settled.

        Settled: not paused, and the sink's stream already continues this SSRC, so no
        handover is due and such a packet only gets the fixed rewrite returned here. The
        relay worker uses it to take a shortcut for the plain packet (no padding, extension
        or CSRCs) that is nearly every packet of a call; anything else takes `relay`.
        """
        if self._paused or self._in_ssrc is None or self.sink.output.writer is not self:
            return None
        return SteadyRelay(
            self._audio_in,
            self._audio_out,
            self._in_ssrc,
            self._seq_offset,
            self._ts_offset,
            self._table,
        )

    def relay(self, endpoint: RtpEndpoint, data: bytes) -> None:
        """`on_packet` handler of the source endpoint (which has checked length and version).

        The relay worker repeats the rewrite of a plain audio packet inline (`steady`): keep
        the two in step (test_relay_worker_shortcut.py compares them).
        """
        if self._paused:
            self._in_ssrc = None  # resume with a handover: no sequence gap, marker set
            return
        size = len(data)
        first = data[0]
        second = data[1]
        payload_type = second & 0x7F
        table = None
        audio = payload_type == self._audio_in
        if audio:
            out_type = self._audio_out
            table = self._table
        elif payload_type == self._event_in and self._event_out is not None:
            out_type = self._event_out
        else:
            self.dropped += 1
            return
        if first & 0x1F:
            # CSRCs and header extensions describe the source leg (extension ids are negotiated
            # per leg): strip them, keeping the padding bit.
            header = 12 + 4 * (first & 0x0F)
            if first & 0x10:
                if header + 4 > size:
                    self.dropped += 1
                    return
                header += 4 + 4 * _EXTENSION_WORDS.unpack_from(data, header + 2)[0]
            if header > size:
                self.dropped += 1
                return
            packet = bytearray(data[:12])
            packet += data[header:]
            first &= 0xE0
        else:
            packet = bytearray(data)
        if table is not None:
            end = len(packet)
            if first & 0x20:
                padding = packet[-1]
                if not 0 < padding <= end - 12:
                    self.dropped += 1
                    return
                end -= padding
            packet[12:end] = packet[12:end].translate(table)
        sequence, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        now = endpoint.received_at
        sink = self.sink
        output = sink.output
        if ssrc != self._in_ssrc or output.writer is not self:
            start_seq, start_ts = output.handover(self, now)
            self._in_ssrc = ssrc
            self._seq_offset = start_seq - sequence
            self._ts_offset = start_ts - timestamp
            if audio:
                second |= 0x80  # new talkspurt for the phone's jitter buffer
        out_seq = (sequence + self._seq_offset) & 0xFFFF
        out_ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
        # RtpOutputStream.advance(), inlined (a Python call per packet of every call): the
        # stream's newest sequence and timestamp move forward only, never back on reordering.
        if (out_seq - output.sequence) & 0xFFFF < 0x8000:
            output.sequence = out_seq
        if (out_ts - output.timestamp) & 0xFFFFFFFF < 0x80000000:
            output.timestamp = out_ts
            output.sent_at = now
        packet[0] = first
        _MPT_SEQ_TS_SSRC.pack_into(
            packet, 1, (second & 0x80) | out_type, out_seq, out_ts, output.ssrc
        )
        sink.send(packet)


class Bridge:
    """Relays media both ways between two legs; `MediaManager.bridge()` creates and starts it."""

    def __init__(
        self, a: RtpEndpoint, b: RtpEndpoint, a_codec: CodecSpec, b_codec: CodecSpec
    ) -> None:
        if a is b:
            raise ValueError("cannot bridge an endpoint to itself")
        self.a = a
        self.b = b
        self.a_codec = a_codec
        self.b_codec = b_codec
        self.a_to_b = RelayDirection(a, b, a_codec, b_codec)
        self.b_to_a = RelayDirection(b, a, b_codec, a_codec)
        self.active = False

    def toward(self, endpoint: RtpEndpoint) -> RelayDirection:
        """The direction that feeds `endpoint` (pause it to put that phone on hold)."""
        if endpoint is self.b:
            return self.a_to_b
        if endpoint is self.a:
            return self.b_to_a
        raise ValueError("endpoint is not part of this bridge")

    def start(self) -> None:
        """Take over both legs' packet handlers."""
        self.a.on_packet = self.a_to_b.relay
        self.b.on_packet = self.b_to_a.relay
        self.a.on_rtcp = self._rtcp_from_a
        self.b.on_rtcp = self._rtcp_from_b
        self.active = True

    def stop(self) -> None:
        """Give the legs' handlers back (only those still ours); safe to call twice."""
        for endpoint, relay, rtcp in (
            (self.a, self.a_to_b.relay, self._rtcp_from_a),
            (self.b, self.b_to_a.relay, self._rtcp_from_b),
        ):
            if endpoint.on_packet == relay:
                endpoint.on_packet = None
            if endpoint.on_rtcp == rtcp:
                endpoint.on_rtcp = None
        self.active = False

    def _rtcp_from_a(self, endpoint: RtpEndpoint, data: bytes) -> None:
        self._forward_rtcp(self.a_to_b, self.b_to_a, data)

    def _rtcp_from_b(self, endpoint: RtpEndpoint, data: bytes) -> None:
        self._forward_rtcp(self.b_to_a, self.a_to_b, data)

    @staticmethod
    def _forward_rtcp(forward: RelayDirection, reverse: RelayDirection, data: bytes) -> None:
        """Relay a report, mapping SSRCs into the numbering the receiving phone knows."""
        if forward.paused:
            return
        ssrc_map: dict[int, int] = {}
        if forward.input_ssrc is not None:
            # the reporting phone's own stream is known to the far phone as our output SSRC
            ssrc_map[forward.input_ssrc] = forward.sink.output.ssrc
        if reverse.input_ssrc is not None:
            # reports about what we sent the reporting phone concern the far phone's stream
            ssrc_map[forward.source.output.ssrc] = reverse.input_ssrc
        try:
            relayed = rewrite_rtcp(data, ssrc_map)
        except RtcpError as exc:
            _log.debug("dropping malformed RTCP on port %d: %s", forward.source.local_port, exc)
            return
        if relayed is not None:
            forward.sink.send_rtcp(relayed)
