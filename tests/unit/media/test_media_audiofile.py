"""WAV/MP3 decoding to 8 kHz PCM: every WAV encoding, MP3, sniffing, limits, MP3 writing."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from pypbx.media import audiofile
from pypbx.media.audiofile import (
    AudioFormatError,
    decode_audio,
    decode_audio_async,
    encode_mp3,
    load_audio,
    load_audio_async,
    sniff_format,
    to_pcm8k,
    write_mp3,
)


def tone(
    rate: int, seconds: float, freq: float = 440.0, level: float = 0.5
) -> npt.NDArray[np.float64]:
    t = np.arange(int(rate * seconds)) / rate
    return level * np.sin(2 * np.pi * freq * t)


def encode(
    samples: npt.NDArray[np.generic], rate: int, fmt: str = "WAV", subtype: str | None = None
) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def peak_hz(pcm: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum)) * 8000 / len(pcm)


def rms(pcm: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def wav_with_tag(tag: int) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, 1, 8000, 16000, 2, 16)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", 4)
        + b"\0" * 4
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", None),  # RIFF, but a video
        (b"ID3\x04\x00\x00\x00\x00\x00\x0a", "mp3"),
        (b"\xff\xfb\x90\x64", "mp3"),  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
        (b"\xff\xf3\x88\xc4", "mp3"),  # MPEG-2 layer III (what libsndfile writes at 16 kHz)
        (b"\xff\xe3\x18\xc4", "mp3"),  # MPEG-2.5 layer III (8 kHz)
        (b"\xff\xeb\x90\x64", None),  # version bits 01: reserved
        (b"\xff\xf9\x90\x64", None),  # layer bits 00: reserved (an ADTS AAC header looks so)
        (b"\xff\xfb\xf0\x64", None),  # bitrate index 15: invalid
        (b"\xff\xfb\x9c\x64", None),  # sample rate index 3: reserved
        (b"\xff\xd8\xff\xe0", None),  # JPEG
        (b"OggS\x00\x02", None),
        (b"fLaC\x00\x00", None),
        (b"<html>", None),
        (b"", None),
        (b"RIFF", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


# --- WAV --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subtype",
    [
        "PCM_U8",
        "PCM_16",
        "PCM_24",
        "PCM_32",
        "FLOAT",
        "DOUBLE",
        "ULAW",
        "ALAW",
        "IMA_ADPCM",
        "MS_ADPCM",
    ],
)
@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_wav_encodings_and_rates(subtype: str, rate: int) -> None:
    pcm = decode_audio(encode(tone(rate, 1.0), rate, subtype=subtype))
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    slack = 400 if "ADPCM" in subtype else 1  # ADPCM pads to whole blocks of up to 2k samples
    assert 8000 - slack <= len(pcm) <= 8000 + slack
    assert abs(peak_hz(pcm[:8000]) - 440) < 3
    assert rms(pcm) == pytest.approx(0.5 * 32768 / np.sqrt(2), rel=0.05)


def test_gsm_wav_is_decoded() -> None:
    pcm = decode_audio(encode(tone(8000, 1.0), 8000, subtype="GSM610"))
    assert 8000 <= len(pcm) <= 8320  # whole 320-sample GSM blocks
    assert abs(peak_hz(pcm[:8000]) - 440) < 3


def test_8khz_pcm16_is_bit_exact() -> None:
    samples = np.random.default_rng(7).integers(-32768, 32768, 4000).astype(np.int16)
    pcm = decode_audio(encode(samples, 8000, subtype="PCM_16"))
    assert np.array_equal(pcm, samples)


def test_stereo_is_mixed_down() -> None:
    left = tone(16000, 0.5)
    opposite = decode_audio(encode(np.stack([left, -left], axis=1), 16000))
    assert np.max(np.abs(opposite)) <= 2
    one_side = decode_audio(encode(np.stack([left, np.zeros_like(left)], axis=1), 16000))
    assert rms(one_side) == pytest.approx(0.25 * 32768 / np.sqrt(2), rel=0.02)


def test_more_than_two_channels_are_mixed_down_too() -> None:
    left = tone(8000, 0.5)
    pcm = decode_audio(encode(np.stack([left, left, left, left], axis=1), 8000))
    assert rms(pcm) == pytest.approx(0.5 * 32768 / np.sqrt(2), rel=0.01)


def test_float_wav_beyond_full_scale_is_clipped() -> None:
    samples = np.array([2.0, -2.0, 0.5, -1.0] * 100, dtype=np.float32)
    pcm = decode_audio(encode(samples, 8000, subtype="FLOAT"))
    assert pcm[:4].tolist() == [32767, -32768, 16384, -32768]


def test_resampled_output_is_not_shifted() -> None:
    """HQ resampling keeps the sound where it was: a click at 0.5 s stays at 0.5 s."""
    click = np.zeros(48000)
    click[24000] = 0.9
    pcm = decode_audio(encode(click, 48000))
    assert abs(int(np.argmax(np.abs(pcm))) - 4000) <= 1


# --- MP3 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_mp3(rate: int) -> None:
    pcm = decode_audio(encode(tone(rate, 2.0, freq=1000), rate, fmt="MP3"))
    assert abs(len(pcm) - 16000) <= 160
    assert abs(peak_hz(pcm[1000:15000]) - 1000) < 3
    assert rms(pcm[1000:15000]) == pytest.approx(0.5 * 32768 / np.sqrt(2), rel=0.15)


def test_mp3_stereo() -> None:
    left = tone(44100, 1.0)
    pcm = decode_audio(encode(np.stack([left, left], axis=1), 44100, fmt="MP3"))
    assert abs(peak_hz(pcm[500:7500]) - 440) < 3


def test_mp3_with_id3_tag() -> None:
    frame = b"TIT2" + struct.pack(">I", 6) + b"\0\0" + b"\0hello"
    tag = b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(frame)]) + frame  # syncsafe size < 128
    pcm = decode_audio(tag + encode(tone(16000, 1.0), 16000, fmt="MP3"))
    assert abs(peak_hz(pcm[500:7500]) - 440) < 3


def test_the_name_does_not_matter() -> None:
    mp3 = encode(tone(16000, 1.0), 16000, fmt="MP3")
    assert len(decode_audio(mp3, name_hint="prompt.wav")) == pytest.approx(8000, abs=80)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a WAV or MP3 file"),
        (b"hello world, this is text", "not a WAV or MP3 file"),
        (b"OggS\x00\x02" + b"\0" * 100, "not a WAV or MP3 file"),
        (b"RIFF\x00\x00\x00\x00WAVE", "WAV file is damaged (no readable 'fmt ' chunk)"),
        (wav_with_tag(0x0055), "WAV encoding MPEG Layer 3 (format tag 0x0055) is not supported"),
        (wav_with_tag(0x00FF), "WAV encoding AAC (format tag 0x00FF) is not supported"),
        (wav_with_tag(0x1234), "WAV encoding unknown (format tag 0x1234) is not supported"),
        (b"\xff\xfb\x90\x64" + bytes(range(256)) * 8, "MP3 data could not be decoded"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x01" * 200, "MP3 data could not be decoded"),
        (encode(np.zeros(0), 8000), "audio contains no samples"),
    ],
)
def test_bad_data(data: bytes, message: str) -> None:
    with pytest.raises(AudioFormatError) as info:
        decode_audio(data)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_error_names_the_source() -> None:
    with pytest.raises(AudioFormatError, match=r"^notes\.txt: not a WAV or MP3 file$"):
        decode_audio(b"just text", name_hint="notes.txt")


def test_damaged_pcm_wav_is_not_called_unsupported() -> None:
    data = bytearray(wav_with_tag(0x0001))
    struct.pack_into("<H", data, 22, 0)  # zero channels
    with pytest.raises(
        AudioFormatError, match=r"^WAV file is damaged or uses an unsupported PCM variant$"
    ):
        decode_audio(bytes(data))


def test_truncated_wav_plays_what_is_there() -> None:
    data = encode(tone(8000, 1.0), 8000, subtype="PCM_16")
    pcm = decode_audio(data[: 44 + 8000])  # header says 1 s, 0.5 s present
    assert len(pcm) == 4000


@pytest.mark.parametrize("fmt", ["WAV", "MP3"])
def test_duration_limit(fmt: str) -> None:
    data = encode(tone(16000, 3.0), 16000, fmt=fmt)
    with pytest.raises(AudioFormatError, match=r"^long\.x: audio is longer than the 2 s limit$"):
        decode_audio(data, name_hint="long.x", max_seconds=2)
    assert len(decode_audio(data, max_seconds=4)) == pytest.approx(24000, abs=160)


@pytest.mark.parametrize("fmt", ["WAV", "MP3"])
def test_duration_limit_also_holds_while_streaming(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When libsndfile cannot tell the length up front, decoding stops at the limit."""
    monkeypatch.setattr(audiofile, "_UNKNOWN_LENGTH", 0)  # every length counts as unknown
    data = encode(tone(16000, 10.0), 16000, fmt=fmt)
    with pytest.raises(AudioFormatError, match=r"^audio is longer than the 9\.5 s limit$"):
        decode_audio(data, max_seconds=9.5)
    assert len(decode_audio(data, max_seconds=10.5)) == pytest.approx(80000, abs=160)


def test_max_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        decode_audio(encode(tone(8000, 0.1), 8000), max_seconds=0)


# --- files and threads ------------------------------------------------------------------------


def test_load_audio(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    path.write_bytes(encode(tone(22050, 1.0), 22050))
    pcm = load_audio(path)
    assert len(pcm) == 8000 and abs(peak_hz(pcm) - 440) < 3
    assert np.array_equal(load_audio(str(path)), pcm)


def test_load_audio_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp3"
    path.write_text("not audio")
    with pytest.raises(AudioFormatError, match=f"^{path}: not a WAV or MP3 file$"):
        load_audio(path)
    with pytest.raises(AudioFormatError, match=r"^fake\.mp3: not a WAV or MP3 file$"):
        load_audio(path, name_hint="fake.mp3")
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")


async def test_async_variants_match(tmp_path: Path) -> None:
    data = encode(tone(44100, 0.5), 44100, fmt="MP3")
    path = tmp_path / "a.mp3"
    path.write_bytes(data)
    assert np.array_equal(await decode_audio_async(data), decode_audio(data))
    assert np.array_equal(await load_audio_async(path), decode_audio(data))
    with pytest.raises(AudioFormatError, match=r"^x: not a WAV or MP3 file$"):
        await decode_audio_async(b"junk", name_hint="x")


def test_to_pcm8k() -> None:
    samples = tone(22050, 1.0).astype(np.float32)
    pcm = to_pcm8k(samples, 22050)
    assert len(pcm) == 8000 and abs(peak_hz(pcm) - 440) < 3
    same = to_pcm8k(np.array([0.5, -0.5, 1.5], dtype=np.float32), 8000)
    assert same.tolist() == [16384, -16384, 32767]


# --- writing MP3 ------------------------------------------------------------------------------


def test_write_mp3_round_trip(tmp_path: Path) -> None:
    pcm = (tone(8000, 2.0) * 32767).astype(np.int16)
    path = tmp_path / "rec.mp3"
    write_mp3(pcm, 8000, 1, path)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "MP3",
        "MPEG_LAYER_III",
        8000,
        1,
    )
    back = load_audio(path)
    assert abs(len(back) - 16000) <= 160
    assert abs(peak_hz(back[1000:15000]) - 440) < 3


def test_write_mp3_stereo_interleaved(tmp_path: Path) -> None:
    mono = (tone(8000, 1.0) * 32767).astype(np.int16)
    interleaved = np.stack([mono, mono], axis=1).reshape(-1)
    write_mp3(interleaved, 8000, 2, tmp_path / "st.mp3")
    info = sf.info(str(tmp_path / "st.mp3"))
    assert info.channels == 2 and info.duration == pytest.approx(1.0, abs=0.05)


def test_write_mp3_rejects_bad_channel_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^MP3 carries 1 or 2 channels, not 3$"):
        write_mp3(np.zeros(300, np.int16), 8000, 3, tmp_path / "x.mp3")


def test_write_mp3_failure_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot write MP3"):
        write_mp3(np.zeros(800, np.int16), 8000, 1, tmp_path / "no" / "such" / "dir.mp3")


def test_encode_mp3(tmp_path: Path) -> None:
    wav = tmp_path / "call.wav"
    left = (tone(8000, 1.5) * 32767).astype(np.int16)
    sf.write(str(wav), np.stack([left, left // 2], axis=1), 8000, subtype="PCM_16")
    mp3 = tmp_path / "call.mp3"
    encode_mp3(wav, mp3)
    info = sf.info(str(mp3))
    assert (info.format, info.channels, info.samplerate) == ("MP3", 2, 8000)
    assert info.duration == pytest.approx(1.5, abs=0.05)


def test_encode_mp3_failure_leaves_no_file(tmp_path: Path) -> None:
    wav = tmp_path / "bad.wav"
    wav.write_bytes(b"not a wav at all")
    mp3 = tmp_path / "bad.mp3"
    with pytest.raises(OSError, match="cannot convert"):
        encode_mp3(wav, mp3)
    assert not mp3.exists()
