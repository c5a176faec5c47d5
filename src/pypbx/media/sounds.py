"""Built-in sounds, synthesised so the package ships no audio files: hold music, ringback.

The default hold music is a slow, soft arpeggio over four chords (I-vi-IV-V in C major) with
gentle attack and release, at about -20 dBFS: pleasant enough to wait on, and nothing like
the single test tones the integration tests use to tell who hears whom.
"""

from __future__ import annotations

import logging
import wave
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pypbx.media.player import RATE, Pcm

log = logging.getLogger(__name__)

_CHORDS = (  # MIDI note numbers: C major, A minor, F major, G major
    (60, 64, 67, 72),
    (57, 60, 64, 69),
    (53, 57, 60, 65),
    (55, 59, 62, 67),
)
_NOTE_SECONDS = 0.5
_LEVEL = 0.1  # peak amplitude as a fraction of full scale


def _note(midi: int, seconds: float) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * RATE)) / RATE
    freq = 440.0 * 2.0 ** ((midi - 69) / 12)
    # a soft, slightly bell-like timbre: fundamental plus two quiet partials
    wave_ = (
        np.sin(2 * np.pi * freq * t)
        + 0.3 * np.sin(2 * np.pi * 2 * freq * t)
        + 0.1 * np.sin(2 * np.pi * 3 * freq * t)
    )
    envelope = np.minimum(1.0, t / 0.03) * np.exp(-2.5 * t)
    shaped: npt.NDArray[np.float64] = wave_ * envelope
    return shaped


@cache
def default_hold_music() -> Pcm:
    """About 24 s of hold music as 8 kHz int16 PCM (built once per process)."""
    notes: list[npt.NDArray[np.float64]] = []
    for chord in _CHORDS:
        for _ in range(2):
            for midi in (*chord, chord[2], chord[1]):
                notes.append(_note(midi, _NOTE_SECONDS))
    music = np.concatenate(notes)
    music *= _LEVEL / max(1e-9, float(np.max(np.abs(music))))
    return (music * 32767).astype(np.int16)


@cache
def ringback_tone() -> Pcm:
    """Ringback as a caller waiting on a transfer hears it: 425 Hz, 1 s on, 4 s off (ETSI)."""
    t = np.arange(RATE) / RATE
    tone = 0.25 * np.sin(2 * np.pi * 425.0 * t)
    cycle = np.concatenate((tone, np.zeros(4 * RATE)))
    return (cycle * 32767).astype(np.int16)


def load_wav(path: Path) -> Pcm:
    """Read a PCM WAV file as 8 kHz mono int16 (mixed down and resampled as needed)."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128) / 128
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648
    else:
        raise ValueError(f"{path}: unsupported sample width {width * 8} bits")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    if rate != RATE and len(data):
        positions = np.arange(0, len(data), rate / RATE)
        data = np.interp(positions, np.arange(len(data)), data)
    return (np.clip(data, -1.0, 1.0) * 32767).astype(np.int16)


def hold_music(path: Path | None) -> Pcm:
    """The configured hold music file, or the built-in tune if none (or it is unreadable)."""
    if path is not None:
        try:
            return load_wav(path)
        except (OSError, ValueError, wave.Error, EOFError) as exc:
            log.error("cannot use hold music %s (%s); using the built-in tune", path, exc)
    return default_hold_music()


@cache
def error_tone() -> Pcm:
    """The Special Information Tone (ITU-T E.180: 950, 1400, 1800 Hz rising, 330 ms each):
    what a caller hears when a call cannot go on, e.g. an application sent no usable OzML."""
    parts = []
    for freq in (950.0, 1400.0, 1800.0):
        t = np.arange(int(0.33 * RATE)) / RATE
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps: no clicks
        parts.append(0.3 * ramp * np.sin(2 * np.pi * freq * t))
    parts.append(np.zeros(int(0.2 * RATE)))
    return np.round(np.concatenate(parts) * 32767).astype(np.int16)
