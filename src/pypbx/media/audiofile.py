"""Audio files in and out of the PBX: WAV/MP3 decoded to 8 kHz PCM, recordings encoded as MP3.

The file name and the HTTP content type both come from the network and lie often enough
(`prompt.wav` that is really an MP3, `application/octet-stream`), so the container is sniffed
from the first bytes instead. Decoding streams block by block through a soxr resampler: a
one-hour 48 kHz stereo file would need gigabytes as float64 in one piece, while the 8 kHz
int16 result is under 60 MB and the duration guard stops a longer one early.

Decoding is CPU work measured in tens of milliseconds per minute of audio; the `_async`
variants run it in a worker thread so the 20 ms playout clock keeps ticking meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import struct
from typing import BinaryIO, Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from pypbx.media.player import RATE, Pcm

log = logging.getLogger(__name__)

MAX_SECONDS = 3600.0
_BLOCK = 65536  # frames per decode step: bounded memory whatever the file's length
_QUALITY = "HQ"  # far beyond what G.711 can carry; VHQ only costs CPU
_UNKNOWN_LENGTH = 2**62  # libsndfile reports SF_COUNT_MAX frames when it cannot tell

Container = Literal["wav", "mp3"]

# WAVE format tags worth naming when libsndfile refuses a file (RFC 2361 and friends)
_WAV_TAGS = {
    0x0001: "PCM",
    0x0002: "Microsoft ADPCM",
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0050: "MPEG",
    0x0055: "MPEG Layer 3",
    0x0161: "Windows Media Audio",
    0x00FF: "AAC",
    0xFFFE: "extensible",
}
# tags libsndfile decodes: a refusal of one of these means damage, not an unknown encoding
_DECODABLE_TAGS = frozenset(
    {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040, 0xFFFE}
)


class AudioFormatError(ValueError):
    """The bytes are not audio we can play (API status 302)."""


def sniff_format(head: bytes) -> Container | None:
    """Which container the first bytes announce: 'wav', 'mp3' or None."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 3 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version = (head[1] >> 3) & 3
        layer = (head[1] >> 1) & 3
        bitrate = head[2] >> 4
        sample_rate = (head[2] >> 2) & 3
        # reserved values rule out the many binary files that merely start with 0xFF 0xEx
        if version != 1 and layer != 0 and bitrate != 15 and sample_rate != 3:
            return "mp3"
    return None


def to_pcm8k(samples: npt.NDArray[np.float32], rate: int) -> Pcm:
    """Mono float samples in [-1, 1] at `rate` as 8 kHz int16 PCM (for already-decoded audio)."""
    if rate != RATE:
        samples = soxr.resample(samples, rate, RATE, quality=_QUALITY)
    return _to_int16(samples)


def decode_audio(data: bytes, *, name_hint: str = "", max_seconds: float = MAX_SECONDS) -> Pcm:
    """WAV or MP3 bytes as 8 kHz mono int16 PCM; `name_hint` only labels error messages."""
    container = sniff_format(data[:16])
    if container is None:
        raise AudioFormatError(_label(name_hint, "not a WAV or MP3 file"))
    return _decode(io.BytesIO(data), container, name_hint, max_seconds)


def load_audio(
    path: str | os.PathLike[str], *, name_hint: str = "", max_seconds: float = MAX_SECONDS
) -> Pcm:
    """A WAV or MP3 file as 8 kHz mono int16 PCM, streamed from disk rather than read whole.

    Errors name the file by `name_hint` if given (the name the client used, so a message
    sent back over the API does not reveal where the media directory lives), else the path.
    """
    label = name_hint or os.fspath(path)
    with open(path, "rb") as file:
        container = sniff_format(file.read(16))
        if container is None:
            raise AudioFormatError(_label(label, "not a WAV or MP3 file"))
        file.seek(0)
        return _decode(file, container, label, max_seconds)


async def decode_audio_async(
    data: bytes, *, name_hint: str = "", max_seconds: float = MAX_SECONDS
) -> Pcm:
    """`decode_audio` in a worker thread, so the event loop never waits on a decoder."""
    return await asyncio.to_thread(decode_audio, data, name_hint=name_hint, max_seconds=max_seconds)


async def load_audio_async(
    path: str | os.PathLike[str], *, name_hint: str = "", max_seconds: float = MAX_SECONDS
) -> Pcm:
    """`load_audio` in a worker thread."""
    return await asyncio.to_thread(load_audio, path, name_hint=name_hint, max_seconds=max_seconds)


def write_mp3(
    pcm: npt.NDArray[np.int16], rate: int, channels: int, path: str | os.PathLike[str]
) -> None:
    """Encode int16 PCM (interleaved or one column per channel) as an MP3 file.

    Blocking: call it through asyncio.to_thread from the loop.
    """
    if channels not in (1, 2):
        raise ValueError(f"MP3 carries 1 or 2 channels, not {channels}")
    data = pcm.reshape(-1, channels) if pcm.ndim == 1 else pcm
    try:
        sf.write(os.fspath(path), data, rate, format="MP3", subtype="MPEG_LAYER_III")
    except sf.SoundFileError as exc:
        raise OSError(f"cannot write MP3 {os.fspath(path)}: {exc}") from exc


def encode_mp3(wav_path: str | os.PathLike[str], mp3_path: str | os.PathLike[str]) -> None:
    """Convert a WAV recording to MP3 with the same rate and channels (blocking)."""
    try:
        with (
            sf.SoundFile(os.fspath(wav_path)) as wav,
            sf.SoundFile(
                os.fspath(mp3_path),
                "w",
                samplerate=wav.samplerate,
                channels=wav.channels,
                format="MP3",
                subtype="MPEG_LAYER_III",
            ) as mp3,
        ):
            while len(block := wav.read(_BLOCK, dtype="int16", always_2d=True)):
                mp3.write(block)
    except sf.SoundFileError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(mp3_path)  # a half-written MP3 would pass for a complete recording
        raise OSError(f"cannot convert {os.fspath(wav_path)} to MP3: {exc}") from exc


def _decode(source: BinaryIO, container: Container, label: str, max_seconds: float) -> Pcm:
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    try:
        audio = sf.SoundFile(source)
    except sf.SoundFileError as exc:
        log.debug("libsndfile refused %s: %s", label or "audio", exc)
        raise AudioFormatError(_label(label, _open_failure(source, container))) from exc
    with audio:
        rate, channels = int(audio.samplerate), int(audio.channels)
        if rate <= 0 or channels <= 0:
            raise AudioFormatError(_label(label, "audio header declares no samples"))
        if audio.frames < _UNKNOWN_LENGTH and audio.frames > max_seconds * rate:
            raise AudioFormatError(_label(label, _too_long(max_seconds)))
        try:
            return _stream(audio, rate, channels, label, max_seconds)
        except sf.SoundFileError as exc:
            raise AudioFormatError(_label(label, f"audio data is damaged ({exc})")) from exc


def _stream(audio: sf.SoundFile, rate: int, channels: int, label: str, max_seconds: float) -> Pcm:
    limit = int(max_seconds * RATE)
    resampler = None
    if rate != RATE:
        resampler = soxr.ResampleStream(rate, RATE, 1, dtype="float32", quality=_QUALITY)
    chunks: list[Pcm] = []
    total = 0
    while len(block := audio.read(_BLOCK, dtype="float32", always_2d=True)):
        mono = block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0]
        out = mono if resampler is None else resampler.resample_chunk(mono)
        chunks.append(_to_int16(out))
        total += len(out)
        if total > limit:
            raise AudioFormatError(_label(label, _too_long(max_seconds)))
    if resampler is not None:
        chunks.append(_to_int16(resampler.resample_chunk(np.zeros(0, np.float32), last=True)))
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if len(pcm) == 0:
        raise AudioFormatError(_label(label, "audio contains no samples"))
    return pcm


def _to_int16(samples: npt.NDArray[np.float32]) -> Pcm:
    # libsndfile scales int16 by 1/32768, so this inverse is exact for 16-bit sources
    scaled: npt.NDArray[np.float32] = np.asarray(samples, dtype=np.float32) * np.float32(32768)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16)


def _open_failure(source: BinaryIO, container: Container) -> str:
    if container == "mp3":
        return "MP3 data could not be decoded"
    source.seek(0)
    tag = _wav_format_tag(source.read(4096))
    if tag is None:
        return "WAV file is damaged (no readable 'fmt ' chunk)"
    name = _WAV_TAGS.get(tag, "unknown")
    if tag in _DECODABLE_TAGS:
        return f"WAV file is damaged or uses an unsupported {name} variant"
    return f"WAV encoding {name} (format tag 0x{tag:04X}) is not supported"


def _wav_format_tag(head: bytes) -> int | None:
    pos = 12
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk_id == b"fmt ":
            return (
                int(struct.unpack_from("<H", head, pos + 8)[0]) if pos + 10 <= len(head) else None
            )
        pos += 8 + size + (size & 1)
    return None


def _too_long(max_seconds: float) -> str:
    return f"audio is longer than the {max_seconds:g} s limit"


def _label(name: str, problem: str) -> str:
    return f"{name}: {problem}" if name else problem
