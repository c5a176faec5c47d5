"""StreamingWavWriter and repair_wav: round trips, crash safety, header repair."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pypbx.media.wavwriter import HEADER_SIZE, StreamingWavWriter, WavInfo, repair_wav


def ramp(n: int, start: int = 0) -> np.ndarray:
    return ((np.arange(start, start + n) * 37) % 65536 - 32768).astype(np.int16)


def read_int16(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="int16")
    return data, rate


def test_mono_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    pcm = ramp(8000 + 123)
    with StreamingWavWriter(path, 1) as w:
        for i in range(0, len(pcm), 160):
            w.write(pcm[i : i + 160])
        assert w.frames_written == len(pcm)
        assert w.duration == pytest.approx(len(pcm) / 8000)
    assert w.closed
    data, rate = read_int16(path)
    assert rate == 8000
    np.testing.assert_array_equal(data, pcm)
    assert os.path.getsize(path) == HEADER_SIZE + 2 * len(pcm)


def test_mono_accepts_n_by_1(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with StreamingWavWriter(path, 1, rate=16000) as w:
        w.write(ramp(100).reshape(100, 1))
    data, rate = read_int16(path)
    assert rate == 16000
    np.testing.assert_array_equal(data, ramp(100))


def test_stereo_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    left, right = ramp(1000), ramp(1000, start=5000)
    with StreamingWavWriter(path, 2) as w:
        w.write(np.column_stack((left, right)))
        w.write(np.zeros((0, 2), dtype=np.int16))
    data, _ = read_int16(path)
    assert data.shape == (1000, 2)
    np.testing.assert_array_equal(data[:, 0], left)
    np.testing.assert_array_equal(data[:, 1], right)
    info = sf.info(path)
    assert (info.channels, info.subtype) == (2, "PCM_16")


def test_header_is_valid_right_after_open(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    w = StreamingWavWriter(path, 1)
    assert sf.info(path).frames == 0
    assert os.path.getsize(path) == HEADER_SIZE
    w.close()


@pytest.mark.parametrize(
    ("frames", "exc", "message"),
    [
        (np.zeros(10, dtype=np.float32), TypeError, "frames must be int16, got float32"),
        (
            np.zeros(10, dtype=np.int16),
            ValueError,
            "frames of shape (10,) do not fit 2 channel(s)",
        ),
        (
            np.zeros((10, 3), dtype=np.int16),
            ValueError,
            "frames of shape (10, 3) do not fit 2 channel(s)",
        ),
    ],
)
def test_write_rejects_bad_frames(
    tmp_path: Path, frames: np.ndarray, exc: type[Exception], message: str
) -> None:
    with StreamingWavWriter(tmp_path / "a.wav", 2) as w, pytest.raises(exc) as info:
        w.write(frames)
    assert str(info.value) == message


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^channels must be >= 1, got 0$"):
        StreamingWavWriter(tmp_path / "a.wav", 0)
    with pytest.raises(ValueError, match=r"^rate must be >= 1, got 0$"):
        StreamingWavWriter(tmp_path / "a.wav", 1, 0)
    with pytest.raises(ValueError, match=r"^header_interval must be > 0, got 0$"):
        StreamingWavWriter(tmp_path / "a.wav", 1, header_interval=0)
    assert not (tmp_path / "a.wav").exists()


def test_never_overwrites_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        StreamingWavWriter(path, 1)
    assert path.read_bytes() == b"precious"
    with StreamingWavWriter(path, 1, overwrite=True) as w:
        w.write(ramp(10))
    assert sf.info(path).frames == 10


def test_write_after_close_and_double_close(tmp_path: Path) -> None:
    w = StreamingWavWriter(tmp_path / "a.wav", 1)
    w.close()
    w.close()
    with pytest.raises(ValueError, match=r"^write to a closed WAV writer$"):
        w.write(ramp(10))


def test_size_limit(tmp_path: Path) -> None:
    w = StreamingWavWriter(tmp_path / "a.wav", 1)
    w._frames = (0xFFFFFFFF - 36) // 2 - 5  # pretend nearly 4 GiB were written
    w._frames_in_header = w._frames
    with pytest.raises(OverflowError, match="WAV size limit"):
        w.write(ramp(10))
    w._frames = 0
    w.close()


def test_unclosed_file_is_valid_up_to_last_header_update(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    pcm = ramp(12000)  # 1.5 s
    w = StreamingWavWriter(path, 1, header_interval=1.0)
    for i in range(0, len(pcm), 160):
        w.write(pcm[i : i + 160])
    # Read through another handle while the writer is still open.
    data, _ = read_int16(path)
    assert len(data) == 8000
    np.testing.assert_array_equal(data, pcm[:8000])
    w.flush()
    data, _ = read_int16(path)
    np.testing.assert_array_equal(data, pcm)
    w.close()


def test_header_interval_counts_audio(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    w = StreamingWavWriter(path, 2, header_interval=0.25)
    for _ in range(14):  # 14 * 160 = 2240 frames; the update is at the write reaching 2000
        w.write(np.zeros((160, 2), dtype=np.int16))
    assert sf.info(path).frames == 2080
    w.close()
    assert sf.info(path).frames == 2240


def test_fsync_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("os.fsync", calls.append)
    with StreamingWavWriter(tmp_path / "a.wav", 1, header_interval=0.02, fsync=True) as w:
        w.write(ramp(160))
        w.write(ramp(100))
    assert len(calls) == 3  # on open, at the interval, on close
    calls.clear()
    with StreamingWavWriter(tmp_path / "b.wav", 1, header_interval=0.02) as w:
        w.write(ramp(160))
    assert calls == []


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from pypbx.media.wavwriter import StreamingWavWriter
    w = StreamingWavWriter(sys.argv[1], 2, header_interval=1.0, fsync=True)
    t = np.arange(20000)
    pcm = np.column_stack((t % 1000, -(t % 1000))).astype(np.int16)
    for i in range(0, len(pcm), 160):
        w.write(pcm[i : i + 160])
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_survives_sigkill_and_repairs(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=False, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    t = np.arange(20000)
    expected = np.column_stack((t % 1000, -(t % 1000))).astype(np.int16)
    data, _ = read_int16(path)
    assert data.shape == (16000, 2)  # the header update at 2 s
    np.testing.assert_array_equal(data, expected[:16000])
    info = repair_wav(path)
    # What sat in Python's file buffer (< 8 KiB) died with the process; the rest is back.
    assert info.repaired and (info.channels, info.rate) == (2, 8000)
    assert 20000 - 8192 // 4 <= info.frames <= 20000
    assert info.duration == info.frames / 8000
    data, _ = read_int16(path)
    np.testing.assert_array_equal(data, expected[: info.frames])
    assert repair_wav(path).repaired is False


def crashed_file(tmp_path: Path, frames: int, extra: bytes = b"") -> tuple[Path, np.ndarray]:
    """A WAV whose writer wrote `frames` frames after its only header update."""
    path = tmp_path / "crashed.wav"
    w = StreamingWavWriter(path, 1, header_interval=100)
    pcm = ramp(frames)
    w.write(pcm)
    w._file.flush()  # type: ignore[union-attr]
    with open(path, "ab") as f:
        f.write(extra)
    w._file = None  # abandon it, as a killed process would
    return path, pcm


def test_repair_recovers_tail(tmp_path: Path) -> None:
    path, pcm = crashed_file(tmp_path, 1234)
    assert sf.info(path).frames == 0
    assert repair_wav(path) == WavInfo(1234, 1, 8000, repaired=True)
    data, _ = read_int16(path)
    np.testing.assert_array_equal(data, pcm)


def test_repair_drops_partial_sample(tmp_path: Path) -> None:
    path, pcm = crashed_file(tmp_path, 50, extra=b"\x07")
    assert repair_wav(path) == WavInfo(50, 1, 8000, repaired=True)
    assert os.path.getsize(path) == HEADER_SIZE + 100
    np.testing.assert_array_equal(read_int16(path)[0], pcm)


def test_repair_after_crash_between_the_two_size_writes(tmp_path: Path) -> None:
    path = tmp_path / "half.wav"
    with StreamingWavWriter(path, 1) as w:
        w.write(ramp(300))
    raw = bytearray(path.read_bytes())
    raw[40:44] = struct.pack("<I", 200)  # RIFF size updated, data size still stale
    path.write_bytes(bytes(raw))
    assert repair_wav(path) == WavInfo(300, 1, 8000, repaired=True)
    np.testing.assert_array_equal(read_int16(path)[0], ramp(300))


def test_repair_leaves_good_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "good.wav"
    sf.write(path, ramp(999), 8000, subtype="PCM_16")
    before = path.read_bytes()
    assert repair_wav(path) == WavInfo(999, 1, 8000, repaired=False)
    assert path.read_bytes() == before


def test_repair_keeps_chunks_after_the_data(tmp_path: Path) -> None:
    path = tmp_path / "list.wav"
    pcm = ramp(10).tobytes()
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    data = b"data" + struct.pack("<I", len(pcm)) + pcm
    junk = b"LIST" + struct.pack("<I", 4) + b"INFO"
    body = b"WAVE" + fmt + data + junk
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    before = path.read_bytes()
    assert repair_wav(path) == WavInfo(10, 1, 8000, repaired=False)
    assert path.read_bytes() == before


def test_repair_odd_sized_8bit_data_gets_pad_byte(tmp_path: Path) -> None:
    path = tmp_path / "u8.wav"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
    header = b"RIFF" + struct.pack("<I", 36) + b"WAVE" + fmt + b"data" + struct.pack("<I", 0)
    path.write_bytes(header + bytes([128, 129, 130]))
    assert repair_wav(path) == WavInfo(3, 1, 8000, repaired=True)
    raw = path.read_bytes()
    assert len(raw) == 48
    assert struct.unpack("<I", raw[4:8])[0] == 40
    assert struct.unpack("<I", raw[40:44])[0] == 3
    assert sf.info(path).frames == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a RIFF/WAVE file"),
        (b"RIFF\x00\x00\x00\x00WAVX", "not a RIFF/WAVE file"),
        (b"ID3\x04" + bytes(40), "not a RIFF/WAVE file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no data chunk"),
        (b"RIFF\x04\x00\x00\x00WAVEdata\x00\x00\x00\x00", "missing or invalid fmt chunk"),
        (b"RIFF\x04\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "truncated fmt chunk"),
    ],
)
def test_repair_rejects_non_wav(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        repair_wav(path)
    assert path.read_bytes() == content
