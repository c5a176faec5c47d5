"""What pypbx itself sends one phone while a call feature is active.

Play and Speak lay a prompt over the conversation: the party keeps hearing the other phone
(spec 8.9: "the audio is mixed into what each selected party hears"), so while a prompt runs
the relay toward that phone is paused and this output sends, every 20 ms, the prompt frame
plus whatever the other phone said (decoded by its `InboundAudio` tap into `conversation`).
SendDTMF interrupts that for RFC 4733 telephone-events. One output per phone, driven by the
shared playout clock; when it has nothing left to send it says so through `on_idle`, and the
call goes back to plain relaying (or to hold music).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pypbx.media.bridge import CodecSpec
from pypbx.media.endpoint import RtpEndpoint
from pypbx.media.fifo import PcmFifo
from pypbx.media.g711 import alaw_encode, ulaw_encode
from pypbx.media.player import FRAME, AudioSource, Pcm
from pypbx.media.rtp import RTP_HEADER

__all__ = ["EventBurst", "LegOutput"]

log = logging.getLogger(__name__)

_SILENCE = np.zeros(FRAME, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class EventBurst:
    """The telephone-event packets of one 20 ms tick (an end packet and its repeats share one).

    `start` marks the first packet of a key press: it takes a new RTP timestamp, which every
    later packet of that press repeats (RFC 4733 2.5.1.2); `samples` is the press's length.
    """

    payloads: tuple[bytes, ...]
    start: bool
    samples: int


# A DTMF step per tick: a burst of event packets, or None for a pause (audio is sent then).
DtmfStep = EventBurst | None


class LegOutput:
    def __init__(
        self,
        endpoint: RtpEndpoint,
        codec: CodecSpec,
        on_idle: Callable[[LegOutput], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.codec = codec
        self.finished = False
        self.mix_conversation = False
        self.conversation = PcmFifo()
        self.source: AudioSource | None = None
        self.on_source_done: Callable[[], None] | None = None
        self._dtmf: deque[DtmfStep] = deque()
        self._on_idle = on_idle
        self._clock = clock
        self._event_ts = 0

    @property
    def busy(self) -> bool:
        return self.source is not None or bool(self._dtmf)

    def play(self, source: AudioSource, on_done: Callable[[], None] | None = None) -> None:
        """Start a prompt, replacing the one playing (spec 8.9: a new Play replaces)."""
        self.source = source
        self.on_source_done = on_done

    def stop_playback(self) -> None:
        self.source = None
        self.on_source_done = None

    def queue_dtmf(self, steps: Sequence[DtmfStep]) -> None:
        self._dtmf.extend(steps)

    def set_codec(self, codec: CodecSpec) -> None:
        self.codec = codec

    def tick(self) -> None:
        if self.finished:
            return
        if self.endpoint.closed:
            self.finished = True
            return
        if self._dtmf:
            step = self._dtmf.popleft()
            if step is not None and self.codec.telephone_event_pt is not None:
                self.conversation.clear()  # the press replaces what would have been heard
                self._send_events(step, self.codec.telephone_event_pt)
                return
        frame = self._next_prompt_frame()
        heard = self.conversation.take() if self.mix_conversation else None
        if not self.mix_conversation and len(self.conversation):
            self.conversation.clear()
        if frame is None and not self.busy:
            self.finished = True
            self._on_idle(self)
            return
        self._send_audio(_mix(frame, heard))

    def _next_prompt_frame(self) -> Pcm | None:
        source = self.source
        if source is None:
            return None
        frame = source.next_frame()
        if frame is None:
            done = self.on_source_done
            self.source = None
            self.on_source_done = None
            if done is not None:
                done()
        return frame

    def _send_audio(self, pcm: Pcm) -> None:
        encode = alaw_encode if self.codec.name == "PCMA" else ulaw_encode
        self.endpoint.send_media(encode(pcm), self.codec.payload_type, FRAME, writer=self)

    def _send_events(self, burst: EventBurst, payload_type: int) -> None:
        output = self.endpoint.output
        now = self._clock()
        for index, payload in enumerate(burst.payloads):
            if burst.start and index == 0:
                sequence, timestamp, _ = output.next_frame(self, burst.samples, now)
                self._event_ts = timestamp
                marker = 0x80
            else:
                sequence = (output.sequence + 1) & 0xFFFF
                timestamp = self._event_ts
                output.advance(sequence, timestamp, now)
                marker = 0
            header = RTP_HEADER.pack(0x80, marker | payload_type, sequence, timestamp, output.ssrc)
            self.endpoint.send(header + payload)


def _mix(prompt: Pcm | None, heard: Pcm | None) -> Pcm:
    if prompt is None:
        return heard if heard is not None else _SILENCE
    if heard is None:
        return prompt
    total = prompt.astype(np.int32) + heard.astype(np.int32)
    return np.clip(total, -32768, 32767).astype(np.int16)
