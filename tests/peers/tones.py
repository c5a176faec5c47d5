"""Test tones in, frequency analysis out: how tests prove where audio went.

A phone plays a known sine tone as its microphone; the other phone records what it heard.
If the recording's dominant frequency is the far side's tone, media was bridged correctly.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000


def write_tone(
    path: Path,
    frequency: float,
    seconds: float,
    *,
    amplitude: float = 0.5,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Write a mono 16-bit PCM WAV sine tone; amplitude is a fraction of full scale.

    8 kHz mono is what G.711 carries, so the phone does no resampling that could smear
    the tone.
    """
    n = round(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    samples = np.round(amplitude * 32767.0 * np.sin(2.0 * np.pi * frequency * t))
    pcm = samples.astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)
    return path


def read_wav(path: Path) -> tuple[npt.NDArray[np.float64], int]:
    """Return (mono samples scaled to [-1, 1), sample rate) of a 16-bit PCM WAV.

    Multi-channel files are mixed down, since recorders differ in channel layout.
    """
    with wave.open(str(path), "rb") as src:
        if src.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * src.getsampwidth()}-bit")
        channels = src.getnchannels()
        rate = src.getframerate()
        raw = src.readframes(src.getnframes())
    data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if channels > 1:
        data = data[: len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)
    return data, rate


def _segment(path: Path, skip_seconds: float) -> tuple[npt.NDArray[np.float64], int]:
    data, rate = read_wav(path)
    data = data[int(skip_seconds * rate) :]
    if len(data) < rate // 10:
        raise ValueError(
            f"{path}: only {len(data)} samples after skipping {skip_seconds} s; need >= 0.1 s"
        )
    return data, rate


def dominant_frequency(path: Path, skip_seconds: float = 0.5) -> float:
    """Frequency (Hz) of the strongest spectral peak, ignoring the first `skip_seconds`.

    The start is skipped because call setup produces silence and jitter-buffer warm-up.
    """
    data, rate = _segment(path, skip_seconds)
    windowed = (data - data.mean()) * np.hanning(len(data))
    spectrum = np.abs(np.fft.rfft(windowed))
    freqs = np.fft.rfftfreq(len(windowed), d=1.0 / rate)
    spectrum[freqs < 50.0] = 0.0  # DC and hum are never what a test is looking for
    return float(freqs[int(np.argmax(spectrum))])


def goertzel_power(samples: npt.NDArray[np.float64], rate: int, frequency: float) -> float:
    """Signal power at one frequency (Goertzel), normalised so a full-scale sine gives ~0.5."""
    n = len(samples)
    k = round(n * frequency / rate)
    coeff = 2.0 * np.cos(2.0 * np.pi * k / n)
    s_prev = 0.0
    s_prev2 = 0.0
    for x in samples.tolist():
        s = x + coeff * s_prev - s_prev2
        s_prev2 = s_prev
        s_prev = s
    power = s_prev2**2 + s_prev**2 - coeff * s_prev * s_prev2
    return float(2.0 * power / (n * n))


def tone_power_ratio(path: Path, frequency: float, skip_seconds: float = 0.5) -> float:
    """Fraction (0..1) of the recording's energy that lies at `frequency`.

    Near 1 for a clean tone, near 0 for silence, noise or a different tone; a robust
    yes/no for "did this phone hear that tone" that does not depend on the volume.
    """
    data, rate = _segment(path, skip_seconds)
    data = data - data.mean()
    total = float(np.mean(data * data))
    if total <= 1e-12:
        return 0.0
    # Goertzel over 100 ms blocks (whole periods for any tone that divides 10 Hz) avoids
    # leakage from a long block whose length is not a multiple of the period.
    block = rate // 10
    blocks = len(data) // block
    power = sum(
        goertzel_power(data[i * block : (i + 1) * block], rate, frequency) for i in range(blocks)
    )
    return min(1.0, power / blocks / total)


def rms(path: Path, skip_seconds: float = 0.0) -> float:
    """Root-mean-square level (full scale = 1.0): tells silence from sound."""
    data, _ = _segment(path, skip_seconds)
    return float(np.sqrt(np.mean(data * data)))


def wav_duration(path: Path) -> float:
    """Length in seconds; a recording shorter than the call means audio stopped flowing."""
    with wave.open(str(path), "rb") as src:
        return src.getnframes() / src.getframerate()
