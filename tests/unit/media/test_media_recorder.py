"""CallRecorder: wall-time length under jitter and loss, mixing, stop conditions, MP3, naming."""

from __future__ import annotations

import random
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pypbx.media.recorder import (
    FRAME,
    RATE,
    CallRecorder,
    RecordingResult,
    StopReason,
    _JitterFifo,
    convert_to_mp3,
    finalize,
    recording_name,
)

CALLER_HZ = 1000
CALLEE_HZ = 1700


def tone(freq: float, n: int, start: int = 0, amp: float = 8000) -> np.ndarray:
    t = np.arange(start, start + n)
    return (amp * np.sin(2 * np.pi * freq * t / RATE)).astype(np.int16)


def band_power(x: np.ndarray, freq: float, width: float = 15) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(spectrum[np.abs(freqs - freq) <= width].sum())


def total_power(x: np.ndarray) -> float:
    return float((np.abs(np.fft.rfft(x.astype(np.float64))) ** 2).sum())


def simulate(
    rec: CallRecorder,
    duration: float,
    rng: random.Random,
    parties: dict[str, float] | None = None,
    loss: float = 0.05,
) -> None:
    """Phones send 20 ms packets with jitter, losses and bursts; the clock ticks irregularly."""
    parties = {"caller": CALLER_HZ, "callee": CALLEE_HZ} if parties is None else parties
    events: list[tuple[float, int, str, np.ndarray | None]] = []
    for party, freq in parties.items():
        last_arrival = 0.0
        for k in range(int(duration / 0.02)):
            if rng.random() < loss:
                continue
            arrival = (k + 1) * 0.02 + rng.uniform(0, 0.03)
            if rng.random() < 0.02:  # the network stalls, then delivers a burst in order
                arrival += 0.12
            last_arrival = max(arrival, last_arrival)
            if last_arrival < duration:
                events.append((last_arrival, 0, party, tone(freq, FRAME, k * FRAME)))
    t = 0.0
    while True:
        t += rng.uniform(0.003, 0.04) + (0.15 if rng.random() < 0.01 else 0.0)
        if t >= duration:
            break
        events.append((t, 1, "tick", None))
    events.sort(key=lambda e: (e[0], e[1]))
    for when, _, kind, pcm in events:
        if pcm is None:
            rec.tick(when)
            assert rec.duration == pytest.approx(int(when / 0.02 + 1e-6) * 0.02)
        else:
            rec.feed(kind, pcm, when)  # type: ignore[arg-type]
    rec.stop(StopReason.HANGUP, now=duration)


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16")
    assert rate == RATE
    return np.asarray(data)


# --- jitter FIFO -----------------------------------------------------------------------------


def test_fifo_waits_for_prime_then_plays_in_order() -> None:
    fifo = _JitterFifo(prime=320, limit=1600)
    out = np.empty(160, dtype=np.int16)
    fifo.push(np.arange(160, dtype=np.int16))
    assert fifo.pop_into(out) == 0
    assert not out.any()
    fifo.push(np.arange(160, 320, dtype=np.int16))
    assert fifo.pop_into(out) == 160
    np.testing.assert_array_equal(out, np.arange(160))
    assert fifo.pop_into(out) == 160
    np.testing.assert_array_equal(out, np.arange(160, 320))


def test_fifo_underrun_pads_zeros_and_reprimes() -> None:
    fifo = _JitterFifo(prime=320, limit=1600)
    out = np.empty(160, dtype=np.int16)
    fifo.push(np.full(400, 7, dtype=np.int16))
    assert fifo.pop_into(out) == 160
    assert fifo.pop_into(out) == 160
    assert fifo.pop_into(out) == 80
    assert (out[:80] == 7).all() and not out[80:].any()
    assert fifo.underruns == 1
    fifo.push(np.full(160, 9, dtype=np.int16))  # below prime again: still silent
    assert fifo.pop_into(out) == 0
    fifo.push(np.full(160, 9, dtype=np.int16))
    assert fifo.pop_into(out) == 160
    assert (out == 9).all()


def test_fifo_overflow_drops_oldest_across_the_wrap() -> None:
    fifo = _JitterFifo(prime=10, limit=100)
    out = np.empty(30, dtype=np.int16)
    fifo.push(np.arange(60, dtype=np.int16))
    fifo.pop_into(out)  # read position now 30
    fifo.push(np.arange(60, 150, dtype=np.int16))  # 120 queued > 100: 20 oldest go
    assert fifo.dropped == 20
    big = np.empty(100, dtype=np.int16)
    assert fifo.pop_into(big) == 100
    np.testing.assert_array_equal(big, np.arange(50, 150))


def test_fifo_push_larger_than_limit_keeps_newest() -> None:
    fifo = _JitterFifo(prime=10, limit=100)
    fifo.push(np.arange(5, dtype=np.int16))
    fifo.push(np.arange(1000, 1250, dtype=np.int16))
    assert fifo.dropped == 155
    out = np.empty(120, dtype=np.int16)
    assert fifo.pop_into(out) == 100
    np.testing.assert_array_equal(out[:100], np.arange(1150, 1250))
    assert not out[100:].any()


def test_fifo_fills_strided_views() -> None:
    fifo = _JitterFifo(prime=4, limit=16)
    fifo.push(np.arange(1, 9, dtype=np.int16))
    out = np.zeros((8, 2), dtype=np.int16)
    assert fifo.pop_into(out[:, 1]) == 8
    np.testing.assert_array_equal(out[:, 1], np.arange(1, 9))
    assert not out[:, 0].any()


# --- timing and mixing -----------------------------------------------------------------------


def test_regular_feed_is_recorded_bit_exact(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    rec = CallRecorder(path, now=100.0)
    speech = tone(CALLER_HZ, 50 * FRAME)
    for k in range(50):
        now = 100.0 + k * 0.02
        rec.feed("caller", speech[k * FRAME : (k + 1) * FRAME], now)
        rec.tick(now)
    rec.stop("Hangup", now=100.0 + 49 * 0.02)
    assert rec.duration == pytest.approx(49 * 0.02)
    np.testing.assert_array_equal(read(path), speech[: 49 * FRAME])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mono_length_follows_wall_time_and_holds_both_tones(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "m.wav"
    rec = CallRecorder(path, now=0.0)
    simulate(rec, 6.0, random.Random(seed))
    assert rec.finished and rec.reason == "Hangup"
    data = read(path)
    assert data.shape == (300 * FRAME,)
    assert rec.result == RecordingResult(path, "wav", 6.0, "Hangup", None)
    total = total_power(data)
    assert band_power(data, CALLER_HZ) / total > 0.25
    assert band_power(data, CALLEE_HZ) / total > 0.25


@pytest.mark.parametrize("seed", [4, 5])
def test_stereo_puts_each_party_alone_in_its_channel(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "s.wav"
    rec = CallRecorder(path, now=0.0, stereo=True)
    simulate(rec, 5.0, random.Random(seed))
    data = read(path)
    assert data.shape == (250 * FRAME, 2)
    left, right = data[:, 0], data[:, 1]
    assert band_power(left, CALLER_HZ) > 1000 * band_power(left, CALLEE_HZ)
    assert band_power(right, CALLEE_HZ) > 1000 * band_power(right, CALLER_HZ)
    assert band_power(left, CALLER_HZ) / total_power(left) > 0.5
    assert band_power(right, CALLEE_HZ) / total_power(right) > 0.5


def test_silent_call_still_lasts_as_long_as_the_call(tmp_path: Path) -> None:
    path = tmp_path / "q.wav"
    rec = CallRecorder(path, now=10.0)
    rec.tick(10.0)
    rec.tick(10.013)
    rec.tick(9.0)  # a clock hiccup never rewinds the file
    rec.tick(13.37)  # a late tick catches up in one go
    assert rec.duration == pytest.approx(3.36)
    rec.tick(13.371)
    rec.stop("Hangup", now=14.0)
    data = read(path)
    assert data.shape == (4 * RATE,) and not data.any()


def test_mono_mix_clips_instead_of_wrapping(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    rec = CallRecorder(path, now=0.0)

    def both(caller: int, callee: int, now: float) -> None:
        rec.feed("caller", np.full(2 * FRAME, caller, dtype=np.int16), now)
        rec.feed("callee", np.full(2 * FRAME, callee, dtype=np.int16), now)

    both(30000, 30000, 0.0)
    rec.tick(0.04)
    both(-30000, -30000, 0.05)
    both(1000, -3000, 0.05)
    rec.tick(0.12)
    rec.stop()
    data = read(path)
    assert (data[: 2 * FRAME] == 32767).all()
    assert (data[2 * FRAME : 4 * FRAME] == -32768).all()
    assert (data[4 * FRAME :] == -2000).all()
    assert rec.reason == "Stopped"


# --- stop conditions -------------------------------------------------------------------------


def test_max_duration_cuts_exactly_even_on_a_late_tick(tmp_path: Path) -> None:
    path = tmp_path / "d.wav"
    seen: list[RecordingResult] = []
    rec = CallRecorder(path, now=0.0, max_duration=1.0, on_finished=seen.append)
    rec.feed("caller", tone(CALLER_HZ, 4 * RATE), 0.0)
    rec.tick(0.5)
    assert not rec.finished
    rec.tick(3.0)
    assert rec.finished and rec.reason == StopReason.DURATION == "Duration"
    assert seen == [RecordingResult(path, "wav", 1.0, "Duration", None)]
    rec.tick(4.0)
    rec.stop("Hangup", now=5.0)
    assert rec.reason == "Duration" and len(seen) == 1
    assert read(path).shape == (RATE,)


def test_inactivity_with_silence_from_both(tmp_path: Path) -> None:
    path = tmp_path / "i.wav"
    rec = CallRecorder(path, now=0.0, inactivity=2.0)
    hiss = tone(CALLER_HZ, FRAME, amp=50)  # about -56 dBFS: not voice
    t = 0.0
    while not rec.finished:
        t += 0.02
        rec.feed("caller", hiss, t)
        rec.feed("callee", hiss, t)
        rec.tick(t)
        assert t < 3
    assert rec.reason == "Inactivity"
    assert rec.duration == pytest.approx(2.0)
    assert read(path).shape == (2 * RATE,)


def test_inactivity_not_triggered_while_one_party_talks(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "i.wav", now=0.0, inactivity=1.0)
    for k in range(1, 300):
        t = k * 0.02
        rec.feed("callee", tone(CALLEE_HZ, FRAME, k * FRAME, amp=1000), t)  # about -30 dBFS
        rec.tick(t)
    assert not rec.finished
    rec.stop("Hangup", now=6.0)
    assert rec.reason == "Hangup" and rec.duration == pytest.approx(6.0)


def test_inactivity_counts_from_the_last_voice(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "i.wav", now=0.0, inactivity=2.0)
    for k in range(1, 51):  # one second of speech
        rec.feed("caller", tone(CALLER_HZ, FRAME, k * FRAME), k * 0.02)
        rec.tick(k * 0.02)
    t = 1.0
    while not rec.finished and t < 10:
        t += 0.037
        rec.tick(t)
    assert rec.reason == "Inactivity"
    # One frame of silence while the jitter FIFO primed, 1 s of speech, then 2 s of silence.
    assert rec.duration == pytest.approx(3.02)


@pytest.mark.parametrize(("dbfs", "stops"), [(-40.0, False), (-50.0, True)])
def test_voice_threshold_is_about_minus_45_dbfs(tmp_path: Path, dbfs: float, stops: bool) -> None:
    rms = 32768 * 10 ** (dbfs / 20)
    rec = CallRecorder(tmp_path / "v.wav", now=0.0, inactivity=0.5)
    for k in range(1, 60):
        rec.feed("caller", tone(CALLER_HZ, FRAME, k * FRAME, amp=rms * np.sqrt(2)), k * 0.02)
        rec.tick(k * 0.02)
    assert rec.finished is stops


def test_finish_digit(tmp_path: Path) -> None:
    path = tmp_path / "f.wav"
    rec = CallRecorder(path, now=0.0, finish_digits="7890*#a")
    assert rec.finish_digits == "7890*#A"
    rec.tick(0.4)
    assert rec.dtmf("5", 0.41) is False
    assert rec.dtmf("", 0.41) is False
    assert rec.dtmf("#5", 0.41) is False
    assert not rec.finished
    assert rec.dtmf("#", 1.0) is True
    assert rec.finished and rec.reason == "FinishDigit" and rec.finish_digit == "#"
    assert rec.result == RecordingResult(path, "wav", 1.0, "FinishDigit", "#")
    assert rec.dtmf("#", 1.1) is False
    assert read(path).shape == (RATE,)


def test_finish_digit_is_case_insensitive(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "f.wav", now=0.0, finish_digits="A")
    assert rec.dtmf("a", 0.1) is True
    assert rec.finish_digit == "A"


def test_no_finish_digits_means_keys_are_ignored(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "f.wav", now=0.0)
    assert not any(rec.dtmf(d, 0.1) for d in "0123456789*#ABCD")
    rec.stop()


def test_stop_catch_up_may_end_on_duration_first(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "d.wav", now=0.0, max_duration=2.0)
    rec.tick(1.0)
    rec.stop("Hangup", now=7.0)  # the ticks were missed, but 2 s was reached before hang-up
    assert rec.reason == "Duration" and rec.duration == 2.0


def test_after_stop_everything_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    rec = CallRecorder(path, now=0.0)
    rec.stop("Hangup", now=0.5)
    size = path.stat().st_size
    rec.feed("caller", tone(CALLER_HZ, 800), 0.6)
    rec.tick(5.0)
    rec.stop("Stopped", now=6.0)
    assert rec.reason == "Hangup" and rec.duration == 0.5
    assert path.stat().st_size == size


def test_result_before_the_end_raises(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "x.wav", now=0.0)
    with pytest.raises(RuntimeError, match=r"^recording still running$"):
        _ = rec.result
    rec.stop()


def test_write_failure_ends_the_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = CallRecorder(tmp_path / "e.wav", now=0.0)
    rec.tick(0.2)

    def disk_full(frames: np.ndarray) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rec._writer, "write", disk_full)
    rec.tick(0.4)
    assert rec.finished and rec.reason == "Error" and rec.duration == pytest.approx(0.2)
    assert sf.info(tmp_path / "e.wav").frames == int(0.2 * RATE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_duration": 0}, "max_duration must be > 0, got 0"),
        ({"inactivity": -1.0}, "inactivity must be > 0, got -1.0"),
        ({"finish_digits": "12x#e"}, "invalid finish digit(s): 'EX'"),
        ({"jitter": 0.3}, "need 0 < jitter < max_buffer"),
    ],
)
def test_constructor_rejects_bad_values(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        CallRecorder(tmp_path / "x.wav", now=0.0, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert not (tmp_path / "x.wav").exists()


def test_feed_rejects_bad_input(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "x.wav", now=0.0)
    with pytest.raises(ValueError, match=r"^unknown party 'third'$"):
        rec.feed("third", tone(CALLER_HZ, 160), 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^pcm must be a 1-D int16 array$"):
        rec.feed("caller", np.zeros(160), 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^pcm must be a 1-D int16 array$"):
        rec.feed("caller", np.zeros((160, 2), dtype=np.int16), 0.0)
    rec.feed("caller", np.zeros(0, dtype=np.int16), 0.0)
    rec.stop()


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        CallRecorder(path, now=0.0)
    assert path.read_bytes() == b"old"


def test_tick_is_cheap(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "p.wav", now=0.0, inactivity=60.0)
    frames = [tone(CALLER_HZ, FRAME, k * FRAME) for k in range(1000)]
    spent = 0.0
    for k in range(1, 1000):
        t = k * 0.02
        rec.feed("caller", frames[k], t)
        rec.feed("callee", frames[k], t)
        start = time.perf_counter()
        rec.tick(t)
        spent += time.perf_counter() - start
    rec.stop()
    assert spent / 999 < 500e-6  # generous: typically 10-30 µs


# --- MP3 and finalisation --------------------------------------------------------------------


def record_tones(path: Path, stereo: bool, seconds: float = 3.0) -> CallRecorder:
    rec = CallRecorder(path, now=0.0, stereo=stereo)
    simulate(rec, seconds, random.Random(9), loss=0.0)
    return rec


def test_finalize_mp3_mono(tmp_path: Path) -> None:
    wav = tmp_path / "call_20240101-120000.wav"
    rec = record_tones(wav, stereo=False)
    result = finalize(rec.result, "MP3")
    mp3 = tmp_path / "call_20240101-120000.mp3"
    assert result == RecordingResult(mp3, "mp3", 3.0, "Hangup", None)
    assert not wav.exists()
    assert not list(tmp_path.glob("*.part"))
    info = sf.info(mp3)
    assert (info.format, info.channels, info.samplerate) == ("MP3", 1, RATE)
    data = read(mp3)
    assert abs(len(data) - 3 * RATE) <= 1152
    total = total_power(data)
    assert band_power(data, CALLER_HZ) / total > 0.25
    assert band_power(data, CALLEE_HZ) / total > 0.25


def test_finalize_mp3_stereo_keeps_channels(tmp_path: Path) -> None:
    wav = tmp_path / "s.wav"
    rec = record_tones(wav, stereo=True)
    mp3 = finalize(rec.result, "mp3").path
    data = read(mp3)
    assert data.ndim == 2 and data.shape[1] == 2
    left, right = data[:, 0], data[:, 1]
    assert band_power(left, CALLER_HZ) > 30 * band_power(left, CALLEE_HZ)
    assert band_power(right, CALLEE_HZ) > 30 * band_power(right, CALLER_HZ)


def test_finalize_wav_is_a_no_op(tmp_path: Path) -> None:
    result = record_tones(tmp_path / "w.wav", stereo=False, seconds=0.5).result
    assert finalize(result, "wav") is result
    assert (tmp_path / "w.wav").exists()
    with pytest.raises(ValueError, match=r"^unknown recording format 'ogg'$"):
        finalize(result, "ogg")
    mp3_result = RecordingResult(tmp_path / "w.mp3", "mp3", 0.5, "Hangup", None)
    with pytest.raises(ValueError, match=r"^cannot convert mp3 to wav$"):
        finalize(mp3_result, "wav")


def test_empty_recording_still_makes_a_playable_mp3(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "e.wav", now=0.0)
    rec.stop("Hangup", now=0.0)
    assert rec.duration == 0.0
    result = finalize(rec.result, "mp3")
    assert result.format == "mp3" and result.duration == 0.0
    assert sf.info(result.path).format == "MP3"


def test_mp3_failure_keeps_the_wav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = record_tones(tmp_path / "k.wav", stereo=False, seconds=0.5).result
    real_soundfile = sf.SoundFile

    def failing(file: object, mode: str = "r", **kwargs: object) -> object:
        if mode == "w":
            Path(str(file)).write_bytes(b"half an mp3")
            raise RuntimeError("encoder exploded")
        return real_soundfile(file, mode, **kwargs)

    monkeypatch.setattr("soundfile.SoundFile", failing)
    assert finalize(result, "mp3") is result
    assert (tmp_path / "k.wav").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.wav"]


def test_convert_to_mp3_explicit_target_and_keep_wav(tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, tone(CALLER_HZ, RATE), RATE, subtype="PCM_16")
    out = convert_to_mp3(wav, tmp_path / "sub.mp3", delete_wav=False, block_frames=1000)
    assert out == tmp_path / "sub.mp3"
    assert wav.exists()
    data = read(out)
    assert band_power(data, CALLER_HZ) / total_power(data) > 0.8


# --- naming ----------------------------------------------------------------------------------


def test_recording_name_format() -> None:
    started = datetime(2013, 7, 1, 10, 49, 7)
    assert recording_name("XzeOK", started, "mp3") == "XzeOK_20130701-104907.mp3"
    assert recording_name("XzeOK", started, "WAV") == "XzeOK_20130701-104907.wav"


def test_recording_name_is_unique_in_directory(tmp_path: Path) -> None:
    started = datetime(2013, 7, 1, 10, 49, 7)
    assert recording_name("a", started, "mp3", tmp_path) == "a_20130701-104907.mp3"
    (tmp_path / "a_20130701-104907.wav").write_bytes(b"")  # being recorded for an mp3
    assert recording_name("a", started, "mp3", tmp_path) == "a_20130701-104907_2.mp3"
    (tmp_path / "a_20130701-104907_2.mp3").write_bytes(b"")
    assert recording_name("a", started, "mp3", tmp_path) == "a_20130701-104907_3.mp3"
    assert recording_name("a", started, "wav", tmp_path) == "a_20130701-104907_2.wav"


def test_recording_name_cannot_escape_the_directory() -> None:
    started = datetime(2020, 2, 29, 0, 0, 0)
    assert recording_name("../../etc/x", started, "wav") == "_.._etc_x_20200229-000000.wav"
    assert recording_name("..", started, "wav") == "call_20200229-000000.wav"
    assert recording_name("a b/c", started, "wav") == "a_b_c_20200229-000000.wav"


def test_recording_name_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match=r"^unknown recording format 'ogg'$"):
        recording_name("a", datetime(2020, 1, 1), "ogg")
