"""Call recording: both parties' decoded audio in, one growing WAV file out.

The recording must last as long as the call did, whatever the network did. Phones send
jittery, lossy, bursty RTP and sometimes nothing at all (hold, silence suppression), so the
file cannot be built by appending packets as they come: it would shrink with every loss and
drift apart from the other party. Instead the shared 20 ms clock pulls frames, as many as wall
time says are due since the start; each party has a small jitter FIFO that fills in zeros when
its audio is late or missing and sheds its oldest audio when it runs too far ahead.

Sans-I/O apart from the file: time comes in as `now`, and nothing here touches asyncio. The WAV
is always what is written while recording (it survives a crash, see `wavwriter`); MP3 is made
afterwards by `finalize`, which the caller runs in a worker thread.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf

from pypbx.media.wavwriter import StreamingWavWriter, repair_wav

log = logging.getLogger(__name__)

RATE = 8000
FRAME = 160  # samples per 20 ms tick
FRAME_SECONDS = FRAME / RATE
FORMATS = ("mp3", "wav")
DTMF_KEYS = frozenset("0123456789*#ABCD")

Party = Literal["caller", "callee"]
Pcm = npt.NDArray[np.int16]


class StopReason(StrEnum):
    """Why a recording ended; the values are what RecordCompleted's `Reason` carries."""

    DURATION = "Duration"
    INACTIVITY = "Inactivity"
    FINISH_DIGIT = "FinishDigit"
    HANGUP = "Hangup"
    STOPPED = "Stopped"
    ERROR = "Error"


@dataclass(frozen=True, slots=True)
class RecordingResult:
    path: Path
    format: str
    duration: float
    reason: str
    finish_digit: str | None


class _JitterFifo:
    """One party's audio waiting to be recorded, in a fixed ring so a tick allocates nothing.

    Output starts only once `prime` samples are buffered, so normal jitter is absorbed; after
    an underrun it waits for `prime` samples again. Beyond `limit` samples the oldest audio is
    dropped: a burst or a faster sender clock must not delay this party against the other.
    """

    __slots__ = ("_buf", "_count", "_prime", "_primed", "_read", "dropped", "underruns")

    def __init__(self, prime: int, limit: int) -> None:
        self._buf = np.zeros(limit, dtype=np.int16)
        self._prime = prime
        self._primed = False
        self._read = 0
        self._count = 0
        self.dropped = 0
        self.underruns = 0

    def push(self, pcm: Pcm) -> None:
        cap = self._buf.shape[0]
        n = pcm.shape[0]
        if n >= cap:
            self.dropped += self._count + n - cap
            self._buf[:] = pcm[n - cap :]
            self._read, self._count = 0, cap
        else:
            overflow = self._count + n - cap
            if overflow > 0:
                self._read = (self._read + overflow) % cap
                self._count -= overflow
                self.dropped += overflow
            write = (self._read + self._count) % cap
            first = min(n, cap - write)
            self._buf[write : write + first] = pcm[:first]
            if first < n:
                self._buf[: n - first] = pcm[first:]
            self._count += n
        if not self._primed and self._count >= self._prime:
            self._primed = True

    def pop_into(self, out: Pcm) -> int:
        """Fill `out` (possibly a strided view) with the next audio; return real samples used."""
        want = int(out.shape[0])
        if not self._primed:
            out[:] = 0
            return 0
        take = min(want, self._count)
        cap = self._buf.shape[0]
        first = min(take, cap - self._read)
        out[:first] = self._buf[self._read : self._read + first]
        if first < take:
            out[first:take] = self._buf[: take - first]
        out[take:] = 0
        self._read = (self._read + take) % cap
        self._count -= take
        if take < want:
            self._primed = False
            self.underruns += 1
        return int(take)


class CallRecorder:
    """Records one call into a WAV file, mono (parties mixed) or stereo (caller left).

    Driven by `tick(now)` from the shared playout clock; the parties' audio arrives through
    `feed`, DTMF through `dtmf`. Stops by itself on `max_duration`, `inactivity` (no voice
    from either party for that many seconds) or a finish digit, or from outside with `stop`.
    Once `finished`, the WAV is closed and `result` describes it.
    """

    def __init__(
        self,
        wav_path: str | os.PathLike[str],
        *,
        now: float,
        stereo: bool = False,
        max_duration: float | None = None,
        inactivity: float | None = None,
        finish_digits: str = "",
        voice_threshold_dbfs: float = -45.0,
        jitter: float = 0.04,
        max_buffer: float = 0.2,
        header_interval: float = 1.0,
        fsync: bool = False,
        on_finished: Callable[[RecordingResult], None] | None = None,
    ) -> None:
        if max_duration is not None and max_duration <= 0:
            raise ValueError(f"max_duration must be > 0, got {max_duration}")
        if inactivity is not None and inactivity <= 0:
            raise ValueError(f"inactivity must be > 0, got {inactivity}")
        digits = finish_digits.upper()
        bad = sorted(set(digits) - DTMF_KEYS)
        if bad:
            raise ValueError(f"invalid finish digit(s): {''.join(bad)!r}")
        if not 0 < jitter < max_buffer:
            raise ValueError("need 0 < jitter < max_buffer")
        self.stereo = stereo
        self.finish_digits = digits
        self._on_finished = on_finished
        self._start = now
        self._max_frames = (
            None if max_duration is None else max(1, round(max_duration / FRAME_SECONDS))
        )
        self._inactivity_frames = (
            None if inactivity is None else max(1, round(inactivity / FRAME_SECONDS))
        )
        # Energy of a 20 ms frame whose RMS is at the threshold, full scale being 32768.
        self._voice_energy = FRAME * (32768.0 * 10.0 ** (voice_threshold_dbfs / 20.0)) ** 2
        prime = round(jitter * RATE)
        limit = round(max_buffer * RATE)
        self._fifos: dict[str, _JitterFifo] = {
            "caller": _JitterFifo(prime, limit),
            "callee": _JitterFifo(prime, limit),
        }
        self._emitted = 0  # frames of FRAME samples written
        self._last_voice = 0  # frame index just after the last frame with voice
        self._finished = False
        self.reason: str | None = None
        self.finish_digit: str | None = None
        self._writer = StreamingWavWriter(
            wav_path, 2 if stereo else 1, RATE, header_interval=header_interval, fsync=fsync
        )
        self.path = self._writer.path

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def duration(self) -> float:
        """Seconds of audio recorded so far."""
        return self._emitted * FRAME_SECONDS

    @property
    def result(self) -> RecordingResult:
        if not self._finished or self.reason is None:
            raise RuntimeError("recording still running")
        return RecordingResult(self.path, "wav", self.duration, self.reason, self.finish_digit)

    def feed(self, party: Party, pcm: Pcm, now: float) -> None:
        """Queue what `party` sent (decoded 8 kHz int16).

        `now` is accepted for symmetry with the other sans-I/O feeds; arrival times are not
        needed because the jitter allowance is measured in buffered audio.
        """
        if self._finished:
            return
        fifo = self._fifos.get(party)
        if fifo is None:
            raise ValueError(f"unknown party {party!r}")
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError("pcm must be a 1-D int16 array")
        if pcm.shape[0]:
            fifo.push(pcm)

    def tick(self, now: float) -> None:
        """Write every frame due by `now`; late, early or skipped ticks all come out even."""
        if self._finished:
            return
        due = math.floor((now - self._start) / FRAME_SECONDS + 1e-6)
        while not self._finished and self._emitted < due:
            n = due - self._emitted
            if self._max_frames is not None:
                n = min(n, self._max_frames - self._emitted)
            if self._inactivity_frames is not None:
                n = min(n, self._last_voice + self._inactivity_frames - self._emitted)
            if n > 0 and not self._emit(n):
                return
            if self._max_frames is not None and self._emitted >= self._max_frames:
                self._finish(StopReason.DURATION)
            elif (
                self._inactivity_frames is not None
                and self._emitted - self._last_voice >= self._inactivity_frames
            ):
                self._finish(StopReason.INACTIVITY)

    def dtmf(self, digit: str, now: float) -> bool:
        """Note a key press; returns True when it was a finish digit and ended the recording."""
        if self._finished or len(digit) != 1 or digit.upper() not in self.finish_digits:
            return False
        self.stop(StopReason.FINISH_DIGIT, now, digit=digit.upper())
        return True

    def stop(
        self,
        reason: str = StopReason.STOPPED,
        now: float | None = None,
        *,
        digit: str | None = None,
    ) -> None:
        """End the recording (hang-up, transfer, API). With `now`, audio due until then is
        written first, which may itself end it for Duration or Inactivity: that happened earlier
        in wall time and wins. The jitter FIFOs' contents (< `max_buffer`) are not drained.
        """
        if self._finished:
            return
        if now is not None:
            self.tick(now)
            if self._finished:
                return
        self._finish(reason, digit)

    def _emit(self, n: int) -> bool:
        samples = n * FRAME
        caller_fifo, callee_fifo = self._fifos["caller"], self._fifos["callee"]
        out: npt.NDArray[np.int16]
        if self.stereo:
            out = np.empty((samples, 2), dtype=np.int16)
            caller, callee = out[:, 0], out[:, 1]
            got_caller = caller_fifo.pop_into(caller)
            got_callee = callee_fifo.pop_into(callee)
        else:
            caller = np.empty(samples, dtype=np.int16)
            callee = np.empty(samples, dtype=np.int16)
            got_caller = caller_fifo.pop_into(caller)
            got_callee = callee_fifo.pop_into(callee)
            if not got_callee:
                out = caller
            elif not got_caller:
                out = callee
            else:
                mix = np.add(caller, callee, dtype=np.int32)
                np.minimum(mix, 32767, out=mix)
                np.maximum(mix, -32768, out=mix)
                out = mix.astype(np.int16)
        if self._inactivity_frames is not None:
            if got_caller:
                self._note_voice(caller, n)
            if got_callee:
                self._note_voice(callee, n)
        try:
            self._writer.write(out)
        except (OSError, OverflowError):
            log.exception("recording %s: cannot write; stopping it", self.path)
            self._finish(StopReason.ERROR)
            return False
        self._emitted += n
        return True

    def _note_voice(self, pcm: Pcm, n: int) -> None:
        """Move the last-voice mark to after the last frame of `pcm` louder than the threshold."""
        audio = pcm.astype(np.float32)
        if n == 1:  # the usual tick: one dot product, no temporaries
            if float(np.dot(audio, audio)) > self._voice_energy:
                self._last_voice = max(self._last_voice, self._emitted + 1)
            return
        frames = audio.reshape(n, FRAME)
        hits = np.flatnonzero(np.einsum("ij,ij->i", frames, frames) > self._voice_energy)
        if hits.shape[0]:
            self._last_voice = max(self._last_voice, self._emitted + int(hits[-1]) + 1)

    def _finish(self, reason: str, digit: str | None = None) -> None:
        self._finished = True
        self.reason = str(reason)
        self.finish_digit = digit
        try:
            self._writer.close()
        except OSError:
            log.exception("recording %s: cannot close the WAV", self.path)
            if self.reason != StopReason.ERROR:
                self.reason = str(StopReason.ERROR)
        caller, callee = self._fifos["caller"], self._fifos["callee"]
        log.debug(
            "recording %s ended (%s) after %.2f s; dropped %d/%d samples, underruns %d/%d",
            self.path,
            self.reason,
            self.duration,
            caller.dropped,
            callee.dropped,
            caller.underruns,
            callee.underruns,
        )
        if self._on_finished is not None:
            self._on_finished(self.result)


def recording_name(
    call_id: str,
    started: datetime,
    fmt: str,
    directory: str | os.PathLike[str] | None = None,
) -> str:
    """`<CallId>_<yyyyMMdd-HHmmss>.<fmt>`, suffixed `_2`, `_3`... if taken in `directory`.

    A name counts as taken if either the final file or the WAV it is recorded into exists, so
    an MP3 recording cannot clobber another one still being recorded. The call id is reduced
    to safe characters: it ends up in a path.
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown recording format {fmt!r}")
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", call_id).lstrip(".") or "call"
    base = f"{safe_id}_{started:%Y%m%d-%H%M%S}"
    if directory is None:
        return f"{base}.{fmt}"
    folder = Path(directory)
    stem, n = base, 1
    while any((folder / f"{stem}.{ext}").exists() for ext in {fmt, "wav"}):
        n += 1
        stem = f"{base}_{n}"
    return f"{stem}.{fmt}"


def convert_to_mp3(
    wav_path: str | os.PathLike[str],
    mp3_path: str | os.PathLike[str] | None = None,
    *,
    delete_wav: bool = True,
    block_frames: int = 1 << 16,
) -> Path:
    """Encode a finished WAV as MP3 (blocking: run it in a worker thread).

    Streams in blocks so an hour-long call never sits in memory, and writes to a `.part` file
    renamed at the end, so the MP3 name only ever holds a complete file. The WAV is deleted
    only after that rename. An empty recording becomes one silent frame, because a zero-length
    MP3 is not a file any decoder opens.
    """
    wav = Path(wav_path)
    mp3 = wav.with_suffix(".mp3") if mp3_path is None else Path(mp3_path)
    part = mp3.with_name(mp3.name + ".part")
    try:
        with sf.SoundFile(wav) as src:
            channels = int(src.channels)
            with sf.SoundFile(
                part,
                "w",
                samplerate=int(src.samplerate),
                channels=channels,
                format="MP3",
                subtype="MPEG_LAYER_III",
            ) as dst:
                if src.frames == 0:
                    dst.write(np.zeros((FRAME, channels), dtype=np.int16))
                for block in src.blocks(blocksize=block_frames, dtype="int16"):
                    dst.write(block)
        os.replace(part, mp3)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if delete_wav:
        wav.unlink()
    return mp3


def finalize(result: RecordingResult, fmt: str) -> RecordingResult:
    """Turn a finished recording into the requested format (blocking: run it in a thread).

    If MP3 encoding fails the WAV is kept and returned: a recording in the wrong format is
    better than none, and RecordCompleted can still point at it.
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown recording format {fmt!r}")
    if fmt == result.format:
        return result
    if fmt != "mp3" or result.format != "wav":
        raise ValueError(f"cannot convert {result.format} to {fmt}")
    try:
        mp3 = convert_to_mp3(result.path)
    except (OSError, RuntimeError, ValueError):
        log.exception("MP3 encoding of %s failed; keeping the WAV", result.path)
        return result
    return replace(result, path=mp3, format="mp3")


def repair_recordings(directory: str | os.PathLike[str]) -> int:
    """At start-up: fix the headers of WAVs a killed process left open and drop half-written
    MP3s (their WAV is still there). Returns how many WAVs were repaired."""
    repaired = 0
    root = Path(directory)
    for part in root.rglob("*.mp3.part"):
        part.unlink(missing_ok=True)
    for wav in root.rglob("*.wav"):
        try:
            if repair_wav(wav).repaired:
                repaired += 1
        except (OSError, ValueError) as exc:
            log.warning("cannot repair recording %s: %s", wav, exc)
    return repaired
