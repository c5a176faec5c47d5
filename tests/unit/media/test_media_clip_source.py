"""ClipSource: prompts played once, looped, or cut off after a limit, in 20 ms frames."""

from __future__ import annotations

import numpy as np
import pytest

from pypbx.media.player import FRAME, ClipSource, Pcm


def ramp(count: int, start: int = 1) -> Pcm:
    """Distinct non-zero samples, so padding and wrap-around are visible."""
    return np.arange(start, start + count, dtype=np.int16)


def frames(source: ClipSource, most: int = 1000) -> list[Pcm]:
    """Every frame until the source ends (at most `most`)."""
    out: list[Pcm] = []
    for _ in range(most):
        frame = source.next_frame()
        if frame is None:
            return out
        out.append(frame)
    return out


def test_once_whole_frames() -> None:
    pcm = ramp(3 * FRAME)
    out = frames(ClipSource(pcm))
    assert len(out) == 3
    assert all(len(f) == FRAME and f.dtype == np.int16 for f in out)
    assert np.concatenate(out).tolist() == pcm.tolist()


def test_once_pads_the_last_frame_with_silence() -> None:
    pcm = ramp(2 * FRAME + 50)
    out = frames(ClipSource(pcm))
    assert len(out) == 3
    assert out[2].dtype == np.int16
    assert out[2][:50].tolist() == pcm[2 * FRAME :].tolist()
    assert out[2][50:].tolist() == [0] * (FRAME - 50)


def test_once_stays_finished() -> None:
    source = ClipSource(ramp(FRAME))
    assert source.next_frame() is not None
    assert source.next_frame() is None
    assert source.next_frame() is None


def test_clip_shorter_than_a_frame_once() -> None:
    pcm = ramp(40)
    out = frames(ClipSource(pcm))
    assert len(out) == 1
    assert out[0].tolist() == pcm.tolist() + [0] * (FRAME - 40)


def test_empty_clip_gives_nothing_even_repeated() -> None:
    empty = np.zeros(0, dtype=np.int16)
    assert ClipSource(empty).next_frame() is None
    assert ClipSource(empty, repeat=True).next_frame() is None
    assert ClipSource(empty, repeat=True, limit=5).next_frame() is None


def test_repeat_wraps_seamlessly() -> None:
    pcm = ramp(FRAME + 100)  # 260 samples: frames straddle the loop point
    source = ClipSource(pcm, repeat=True)
    out = np.concatenate([source.next_frame() for _ in range(13)])
    expected = np.tile(pcm, -(-len(out) // len(pcm)))[: len(out)]
    assert out.tolist() == expected.tolist()


def test_repeat_of_whole_frames() -> None:
    pcm = ramp(2 * FRAME)
    source = ClipSource(pcm, repeat=True)
    out = [source.next_frame() for _ in range(5)]
    assert [f.tolist() if f is not None else None for f in out] == [
        pcm[:FRAME].tolist(),
        pcm[FRAME:].tolist(),
        pcm[:FRAME].tolist(),
        pcm[FRAME:].tolist(),
        pcm[:FRAME].tolist(),
    ]


def test_repeat_of_a_clip_shorter_than_a_frame_never_ends() -> None:
    pcm = ramp(100)
    source = ClipSource(pcm, repeat=True)
    out = [source.next_frame() for _ in range(50)]
    assert all(f is not None and len(f) == FRAME and f.dtype == np.int16 for f in out)
    first = out[0]
    assert first is not None
    assert first[:100].tolist() == pcm.tolist()  # starts with the clip, then loops into it
    assert first[100:].tolist() == pcm[:60].tolist()


@pytest.mark.parametrize("length", [8, 40, 100, FRAME - 1])
def test_repeat_of_a_clip_shorter_than_a_frame_loops_seamlessly(length: int) -> None:
    """A looped clip is played over and over, however short (e.g. one period of a tone):
    no silence may be inserted between repetitions."""
    pcm = ramp(length)
    source = ClipSource(pcm, repeat=True)
    out = np.concatenate([source.next_frame() for _ in range(6)])
    expected = np.tile(pcm, -(-len(out) // length))[: len(out)]
    assert out.tolist() == expected.tolist()


def test_limit_cuts_a_looped_clip() -> None:
    source = ClipSource(ramp(FRAME + 7), repeat=True, limit=1)
    out = frames(source)
    assert len(out) == 50  # 1 s of 20 ms frames
    assert source.next_frame() is None


def test_limit_longer_than_a_clip_played_once() -> None:
    out = frames(ClipSource(ramp(3 * FRAME), limit=10))
    assert len(out) == 3


def test_limit_shorter_than_a_clip_played_once() -> None:
    pcm = ramp(100 * FRAME)
    out = frames(ClipSource(pcm, limit=0.5))
    assert len(out) == 25
    assert np.concatenate(out).tolist() == pcm[: 25 * FRAME].tolist()


@pytest.mark.parametrize(("limit", "count"), [(0.0, 1), (0.001, 1), (0.02, 1), (0.06, 3), (7, 350)])
def test_limit_rounds_to_frames_and_gives_at_least_one(limit: float, count: int) -> None:
    assert len(frames(ClipSource(ramp(FRAME), repeat=True, limit=limit))) == count


def test_the_clip_is_never_written() -> None:
    pcm = ramp(2 * FRAME)
    source = ClipSource(pcm)
    first = source.next_frame()
    assert first is not None
    assert first.tolist() == pcm[:FRAME].tolist()
    assert pcm.tolist() == ramp(2 * FRAME).tolist()  # the source never writes into its clip
