"""16-bit PCM WAV files written while a call is still going on.

A recording may last an hour and the process may be killed in the middle of it (OOM killer,
power cut, a crash). A WAV header that is only written on close would then claim zero bytes of
audio and most players would show an empty file. So the writer rewrites the RIFF and data sizes
every `header_interval` seconds of audio: whatever happens, the file on disk is a valid WAV
holding everything up to the last update. Audio is always appended *before* the header is
made to claim it, so the header never points past the end of the file. `repair_wav` recovers
the tail written after the last update when the PBX starts again.

Plain blocking file I/O: a 20 ms frame is a few hundred bytes into a buffered file, which is
cheaper than handing it to a thread.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

HEADER_SIZE = 44
_RIFF_SIZE_OFFSET = 4
_DATA_SIZE_OFFSET = 40
_SAMPLE_BYTES = 2
_MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_SIZE - 8)  # the RIFF size field is 32 bits
_WAVE_FORMAT_PCM = 1


def _header(channels: int, rate: int, data_bytes: int) -> bytes:
    block_align = channels * _SAMPLE_BYTES
    return (
        b"RIFF"
        + struct.pack("<I", HEADER_SIZE - 8 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack(
            "<IHHIIHH",
            16,
            _WAVE_FORMAT_PCM,
            channels,
            rate,
            rate * block_align,
            block_align,
            _SAMPLE_BYTES * 8,
        )
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class StreamingWavWriter:
    """Appends int16 frames to a WAV file whose header is kept valid as it grows.

    The header is refreshed each time another `header_interval` seconds of audio have been
    written (counted in audio, not wall time, so the writer needs no clock) and on close.
    With `fsync` the update also survives a power cut, not just a killed process.
    Refuses to overwrite an existing file unless `overwrite` is set: a name collision must
    never destroy an earlier recording.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        channels: int,
        rate: int = 8000,
        *,
        header_interval: float = 1.0,
        fsync: bool = False,
        overwrite: bool = False,
    ) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if rate < 1:
            raise ValueError(f"rate must be >= 1, got {rate}")
        if header_interval <= 0:
            raise ValueError(f"header_interval must be > 0, got {header_interval}")
        self.path = Path(path)
        self.channels = channels
        self.rate = rate
        self.fsync = fsync
        self._interval_frames = max(1, round(header_interval * rate))
        self._frames = 0
        self._frames_in_header = 0
        self._file: BinaryIO | None = open(self.path, "wb" if overwrite else "xb")  # noqa: SIM115
        try:
            self._file.write(_header(channels, rate, 0))
            self._sync()
        except BaseException:
            self._file.close()
            self._file = None
            raise

    @property
    def frames_written(self) -> int:
        return self._frames

    @property
    def duration(self) -> float:
        """Seconds of audio written so far."""
        return self._frames / self.rate

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, frames: npt.NDArray[np.int16]) -> None:
        """Append frames: shape (n,) for mono, (n, channels) for any channel count."""
        if self._file is None:
            raise ValueError("write to a closed WAV writer")
        if frames.dtype != np.int16:
            raise TypeError(f"frames must be int16, got {frames.dtype}")
        mono = frames.ndim == 1 and self.channels == 1
        if not mono and (frames.ndim != 2 or frames.shape[1] != self.channels):
            raise ValueError(
                f"frames of shape {frames.shape} do not fit {self.channels} channel(s)"
            )
        count = int(frames.shape[0])
        if count == 0:
            return
        data_bytes = (self._frames + count) * self.channels * _SAMPLE_BYTES
        if data_bytes > _MAX_DATA_BYTES:
            raise OverflowError(f"{self.path}: WAV size limit (4 GiB) reached")
        self._file.write(frames.astype("<i2", copy=False).tobytes())
        self._frames += count
        if self._frames - self._frames_in_header >= self._interval_frames:
            self._update_header()

    def flush(self) -> None:
        """Make the header claim everything written so far, without waiting for the interval."""
        if self._file is not None:
            self._update_header()

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._update_header()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> StreamingWavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _update_header(self) -> None:
        assert self._file is not None
        data_bytes = self._frames * self.channels * _SAMPLE_BYTES
        # The audio must reach the OS before the header claims it: a crash in between then
        # leaves a header that claims too little (repairable), never too much.
        self._file.flush()
        self._file.seek(_RIFF_SIZE_OFFSET)
        self._file.write(struct.pack("<I", HEADER_SIZE - 8 + data_bytes))
        self._file.seek(_DATA_SIZE_OFFSET)
        self._file.write(struct.pack("<I", data_bytes))
        self._file.seek(0, os.SEEK_END)
        self._sync()
        self._frames_in_header = self._frames

    def _sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What `repair_wav` found; `repaired` tells whether the header had to be rewritten."""

    frames: int
    channels: int
    rate: int
    repaired: bool

    @property
    def duration(self) -> float:
        return self.frames / self.rate


def _header_trustworthy(f: BinaryIO, riff_size: int, file_len: int, data_end: int) -> bool:
    """True when the sizes describe the file: the data ends it, or a real chunk follows it.

    A crash between the two size writes of a header update leaves a correct RIFF size with a
    stale data size; the bytes after the claimed data are then audio, not a chunk id.
    """
    if riff_size != file_len - 8 or data_end > file_len:
        return False
    if data_end == file_len:
        return True
    f.seek(data_end)
    chunk = f.read(8)
    if len(chunk) < 8 or not all(0x20 <= c < 0x7F for c in chunk[:4]):
        return False
    next_size: int = struct.unpack("<I", chunk[4:])[0]
    return data_end + 8 + next_size <= file_len


def repair_wav(path: str | os.PathLike[str]) -> WavInfo:
    """Fix the sizes in the header of a WAV whose writer died before closing it.

    A header is trusted when its RIFF size matches the file length (so files from other tools
    with chunks after the audio are left alone); otherwise the data chunk is taken to run to
    the end of the file, as `StreamingWavWriter` leaves it, and a trailing partial sample is
    cut off. Raises ValueError when the file is not a usable PCM WAV.
    """
    path = Path(path)
    with open(path, "r+b") as f:
        file_len = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"{path}: not a RIFF/WAVE file")
        riff_size = struct.unpack("<I", head[4:8])[0]
        channels = rate = block_align = 0
        pos = 12
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise ValueError(f"{path}: no data chunk")
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                fmt = f.read(16)
                if size < 16 or len(fmt) < 16:
                    raise ValueError(f"{path}: truncated fmt chunk")
                _tag, channels, rate, _rate_bytes, block_align, _bits = struct.unpack(
                    "<HHIIHH", fmt
                )
            elif chunk_id == b"data":
                break
            pos += 8 + size + (size & 1)
            f.seek(pos)
        if channels < 1 or rate < 1 or block_align < 1:
            raise ValueError(f"{path}: missing or invalid fmt chunk before the data")
        data_offset = pos + 8
        if _header_trustworthy(f, riff_size, file_len, data_offset + size + (size & 1)):
            return WavInfo(size // block_align, channels, rate, repaired=False)
        data_bytes = file_len - data_offset
        data_bytes -= data_bytes % block_align
        if data_bytes > _MAX_DATA_BYTES:
            raise ValueError(f"{path}: audio longer than a WAV header can describe")
        pad = data_bytes & 1
        f.truncate(data_offset + data_bytes)
        if pad:
            f.seek(0, os.SEEK_END)
            f.write(b"\0")
        f.seek(_RIFF_SIZE_OFFSET)
        f.write(struct.pack("<I", data_offset + data_bytes + pad - 8))
        f.seek(data_offset - 4)
        f.write(struct.pack("<I", data_bytes))
        f.flush()
        os.fsync(f.fileno())
    log.info("repaired WAV header of %s: %d bytes of audio", path, data_bytes)
    return WavInfo(data_bytes // block_align, channels, rate, repaired=True)
