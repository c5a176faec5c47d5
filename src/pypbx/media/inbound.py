"""What one phone sends, observed beside the relay: DTMF detection and decoded audio.

A tap on the phone's endpoint sees every packet it sends before the bridge relays it. Key
presses come as RFC 4733 telephone-events or, from phones that negotiated none, as tones in
the audio itself; both become `DtmfDigit`s. Decoding G.711 costs CPU on the path every
packet takes, so audio is decoded only while somebody needs it: the in-band detector, a
recorder, or the mixer that lays a prompt over the conversation toward the other phone.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable

from pypbx.media.bridge import CodecSpec
from pypbx.media.dtmf import DtmfDigit, DtmfEventReceiver, InbandDtmfDetector
from pypbx.media.endpoint import RtpEndpoint
from pypbx.media.g711 import alaw_decode, ulaw_decode
from pypbx.media.player import Pcm

__all__ = ["InboundAudio", "PcmSink", "SinkMap"]

log = logging.getLogger(__name__)

PcmSink = Callable[[Pcm], None]

_TS_SSRC = struct.Struct("!II")
_WORD16 = struct.Struct("!H")


class SinkMap(dict[object, PcmSink]):
    """The decoded-audio consumers of one phone, keyed by owner so each removes its own.

    A new consumer needs every audio packet here, so it calls `on_added` first: that brings
    the packets back from a relay worker that only passes key presses on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.on_added: Callable[[], None] | None = None

    def __setitem__(self, owner: object, sink: PcmSink) -> None:
        if self.on_added is not None:
            self.on_added()
        super().__setitem__(owner, sink)


class InboundAudio:
    def __init__(
        self,
        codec: CodecSpec,
        on_digit: Callable[[DtmfDigit], None],
        *,
        inband: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_digit = on_digit
        self.sinks = SinkMap()
        self._clock = clock
        self._events = DtmfEventReceiver()
        self._event_ssrc: int | None = None
        self._detector: InbandDtmfDetector | None = None
        self.codec = codec
        self.set_codec(codec, inband=inband)

    def set_codec(self, codec: CodecSpec, *, inband: bool) -> None:
        """After a re-INVITE changed what the phone sends (or whether it has event support)."""
        if self.sinks.on_added is not None:
            self.sinks.on_added()  # what is needed from the relay may change with the codec
        self.codec = codec
        self._decode = alaw_decode if codec.name == "PCMA" else ulaw_decode
        if inband and self._detector is None:
            self._detector = InbandDtmfDetector()
        elif not inband:
            self._detector = None

    @property
    def inband(self) -> bool:
        return self._detector is not None

    def payload_types_needed(self) -> frozenset[int] | None:
        """The payload types this tap must see; None: all (it decodes the audio)."""
        if self.sinks or self._detector is not None:
            return None
        event = self.codec.telephone_event_pt
        return frozenset() if event is None else frozenset((event,))

    def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
        if not inbound:
            return
        payload_type = data[1] & 0x7F
        codec = self.codec
        if payload_type == codec.telephone_event_pt:
            payload = _payload(data)
            if payload is None:
                return
            now = self._clock()
            timestamp, ssrc = _TS_SSRC.unpack_from(data, 4)
            if ssrc != self._event_ssrc:  # a new stream (phone restarted it): new numbering
                self._event_ssrc = ssrc
                self._events.reset()
            marker = bool(data[1] & 0x80)
            try:
                digits = self._events.feed(timestamp, payload, marker, now)
            except ValueError as exc:
                log.debug("bad telephone-event on port %d: %s", endpoint.local_port, exc)
                return
            for digit in digits:
                self.on_digit(digit)
            return
        if payload_type != codec.payload_type or not (self.sinks or self._detector):
            return
        payload = _payload(data)
        if not payload:
            return
        pcm = self._decode(payload)
        for sink in tuple(self.sinks.values()):
            sink(pcm)
        detector = self._detector
        if detector is not None:
            for digit in detector.feed(pcm, self._clock()):
                self.on_digit(digit)


def _payload(data: bytes | bytearray) -> bytes | None:
    """The payload of a packet the endpoint accepted as RTP; None if the header lies."""
    first = data[0]
    start = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if start + 4 > len(data):
            return None
        start += 4 + 4 * _WORD16.unpack_from(data, start + 2)[0]
    end = len(data)
    if first & 0x20:
        if data[-1] == 0:  # the count includes itself (RFC 3550 5.1): 0 is a lie
            return None
        end -= data[-1]
    if start > end:
        return None
    return bytes(data[start:end])
