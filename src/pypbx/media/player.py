"""Audio the PBX itself sends into a call: music on hold now, prompts and speech later.

One `Playout` clock ticks every 20 ms for all players of the process, instead of one timer
per call: with hundreds of held calls, one wake-up per frame period is what keeps the loop
responsive. Each `Player` pulls the next 20 ms of 8 kHz PCM from its `AudioSource`, encodes
it for the leg's codec and sends it through the endpoint's own outgoing stream, so the phone
sees one continuous RTP stream whether the frames come from the other phone or from us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from pypbx.media.bridge import CodecSpec
from pypbx.media.endpoint import RtpEndpoint
from pypbx.media.g711 import alaw_encode, ulaw_encode

log = logging.getLogger(__name__)

RATE = 8000
FRAME = 160  # samples per 20 ms at 8 kHz
FRAME_SECONDS = FRAME / RATE

Pcm = npt.NDArray[np.int16]
T = TypeVar("T", bound="Ticker")


class AudioSource(Protocol):
    """Produces 8 kHz mono PCM, one 20 ms frame at a time; None when it has finished."""

    def next_frame(self) -> Pcm | None: ...


class LoopingSource:
    """Plays a PCM buffer over and over (music on hold)."""

    def __init__(self, pcm: Pcm) -> None:
        if len(pcm) < FRAME:
            raise ValueError("audio shorter than one 20 ms frame")
        self._pcm = pcm
        self._pos = 0

    def next_frame(self) -> Pcm:
        end = self._pos + FRAME
        if end <= len(self._pcm):
            frame = self._pcm[self._pos : end]
            self._pos = end % len(self._pcm)
            return frame
        head = self._pcm[self._pos :]
        self._pos = FRAME - len(head)
        return np.concatenate((head, self._pcm[: self._pos]))


class ClipSource:
    """Plays a PCM buffer once or looped, optionally for at most `limit` seconds (prompts)."""

    def __init__(self, pcm: Pcm, *, repeat: bool = False, limit: float | None = None) -> None:
        self._pcm = pcm
        self._repeat = repeat and len(pcm) > 0
        self._pos = 0
        self._frames_left = None if limit is None else max(1, round(limit / FRAME_SECONDS))

    def next_frame(self) -> Pcm | None:
        if self._frames_left is not None:
            if self._frames_left <= 0:
                return None
            self._frames_left -= 1
        if self._pos >= len(self._pcm):
            if not self._repeat:
                return None
            self._pos = 0
        end = self._pos + FRAME
        frame = self._pcm[self._pos : end]
        self._pos = end
        if len(frame) == FRAME:
            return frame
        if not self._repeat:
            return np.concatenate((frame, np.zeros(FRAME - len(frame), dtype=np.int16)))
        # looped: continue from the clip's start, as many times as a frame needs
        pad = FRAME - len(frame)
        reps = -(-pad // len(self._pcm))
        tail = np.tile(self._pcm, reps)[:pad]
        self._pos = pad % len(self._pcm)
        return np.concatenate((frame, tail))


class Ticker(Protocol):
    """Anything the shared clock drives every 20 ms: players, leg outputs, recorders."""

    finished: bool

    def tick(self) -> None: ...


class Player:
    """Feeds one endpoint from one source until stopped or the source ends."""

    def __init__(self, endpoint: RtpEndpoint, codec: CodecSpec, source: AudioSource) -> None:
        self.endpoint = endpoint
        self.codec = codec
        self.source = source
        self._encode = alaw_encode if codec.name.upper() == "PCMA" else ulaw_encode
        self.finished = False

    def tick(self) -> None:
        if self.finished or self.endpoint.closed:
            self.finished = True
            return
        frame = self.source.next_frame()
        if frame is None:
            self.finished = True
            return
        payload = self._encode(frame)
        self.endpoint.send_media(payload, self.codec.payload_type, FRAME, writer=self)


class Playout:
    """The shared 20 ms clock that drives every active player."""

    def __init__(self) -> None:
        self._players: list[Ticker] = []
        self._task: asyncio.Task[None] | None = None

    def start(self, player: T) -> T:
        self._players.append(player)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return player

    def stop(self, player: Ticker) -> None:
        player.finished = True
        if player in self._players:
            self._players.remove(player)

    def __contains__(self, player: object) -> bool:
        return player in self._players

    @property
    def active(self) -> int:
        return len(self._players)

    async def close(self) -> None:
        self._players.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while self._players:
            for player in list(self._players):
                try:
                    player.tick()
                except Exception:
                    log.exception("player failed; stopping it")
                    player.finished = True
                if player.finished and player in self._players:
                    self._players.remove(player)
            next_tick += FRAME_SECONDS
            delay = next_tick - loop.time()
            if delay < -0.2:  # fell far behind (a stall): resynchronise instead of bursting
                next_tick = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
