"""A short PCM queue between a phone's jittery packet arrivals and the 20 ms clock.

Packets arrive in bursts and gaps; whoever consumes decoded audio on the playout clock (the
mixer that lays a prompt over the conversation) takes exactly one frame per tick. The queue
waits for a little audio before it starts giving any (so one late packet is not a click of
silence), pads with silence on underflow, and drops the oldest audio when it grows, so the
delay it adds stays bounded however the two clocks drift.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from pypbx.media.player import FRAME, Pcm

__all__ = ["PcmFifo"]


class PcmFifo:
    __slots__ = ("_chunks", "_max", "_prebuffer", "_primed", "_size")

    def __init__(self, *, prebuffer: int = 2 * FRAME, maximum: int = 10 * FRAME) -> None:
        if not 0 <= prebuffer <= maximum:
            raise ValueError("prebuffer must be between 0 and maximum")
        self._chunks: deque[Pcm] = deque()
        self._size = 0
        self._prebuffer = prebuffer
        self._max = maximum
        self._primed = False

    def __len__(self) -> int:
        return self._size

    def push(self, pcm: Pcm) -> None:
        if len(pcm) == 0:
            return
        self._chunks.append(pcm)
        self._size += len(pcm)
        excess = self._size - self._max
        while excess > 0:
            head = self._chunks[0]
            if len(head) <= excess:
                self._chunks.popleft()
                self._size -= len(head)
                excess -= len(head)
            else:
                self._chunks[0] = head[excess:]
                self._size -= excess
                excess = 0

    def take(self, count: int = FRAME) -> Pcm | None:
        """The next `count` samples (silence-padded), or None while there is nothing to give."""
        if not self._primed:
            if self._size < max(self._prebuffer, 1):
                return None
            self._primed = True
        if self._size == 0:
            self._primed = False  # ran dry: wait for the prebuffer again
            return None
        parts: list[Pcm] = []
        need = count
        while need and self._chunks:
            head = self._chunks[0]
            if len(head) <= need:
                parts.append(self._chunks.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._chunks[0] = head[need:]
                need = 0
        taken = count - need
        self._size -= taken
        if need:
            parts.append(np.zeros(need, dtype=np.int16))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0
        self._primed = False
