"""PcmFifo: prebuffering, silence padding on underflow, bounded delay on overflow, clear."""

from __future__ import annotations

import numpy as np
import pytest

from pypbx.media.fifo import PcmFifo
from pypbx.media.player import FRAME, Pcm


def ramp(start: int, count: int) -> Pcm:
    """Samples start, start+1, ...: every sample says where it came from."""
    return np.arange(start, start + count, dtype=np.int16)


def taken(fifo: PcmFifo, count: int = FRAME) -> list[int]:
    out = fifo.take(count)
    assert out is not None
    assert out.dtype == np.int16
    assert len(out) == count
    return [int(x) for x in out]


def test_defaults_wait_for_two_frames() -> None:
    fifo = PcmFifo()
    fifo.push(ramp(0, FRAME))
    assert len(fifo) == FRAME
    assert fifo.take() is None  # one frame is not enough yet
    fifo.push(ramp(FRAME, FRAME))
    first = fifo.take()
    assert first is not None
    assert first.tolist() == list(range(FRAME))
    second = fifo.take()
    assert second is not None
    assert second.tolist() == list(range(FRAME, 2 * FRAME))
    assert len(fifo) == 0


def test_once_primed_gives_below_the_prebuffer() -> None:
    fifo = PcmFifo(prebuffer=300, maximum=1000)
    fifo.push(ramp(0, 320))
    assert len(taken(fifo)) == FRAME
    assert len(fifo) == 160  # below the prebuffer now, yet still given
    out = fifo.take()
    assert out is not None
    assert out.tolist() == list(range(160, 320))


@pytest.mark.parametrize("chunk", [1, 7, 80, 160, 250])
def test_chunks_of_any_size_come_out_in_order(chunk: int) -> None:
    fifo = PcmFifo(prebuffer=0, maximum=100_000)
    total = 10 * FRAME
    for start in range(0, total, chunk):
        fifo.push(ramp(start, min(chunk, total - start)))
    out = [fifo.take() for _ in range(10)]
    assert all(frame is not None and frame.dtype == np.int16 for frame in out)
    assert np.concatenate([f for f in out if f is not None]).tolist() == list(range(total))
    assert len(fifo) == 0


def test_take_other_counts() -> None:
    fifo = PcmFifo(prebuffer=0, maximum=1000)
    fifo.push(ramp(0, 100))
    assert taken(fifo, 30) == list(range(30))
    assert taken(fifo, 50) == list(range(30, 80))
    assert len(fifo) == 20


def test_underflow_pads_with_silence_then_waits_for_the_prebuffer_again() -> None:
    fifo = PcmFifo(prebuffer=FRAME, maximum=10 * FRAME)
    fifo.push(ramp(1, 200))
    assert taken(fifo) == list(range(1, 161))
    padded = fifo.take()
    assert padded is not None
    assert len(padded) == FRAME
    assert padded.dtype == np.int16
    assert padded[:40].tolist() == list(range(161, 201))
    assert not padded[40:].any()
    assert len(fifo) == 0
    assert fifo.take() is None  # ran dry
    fifo.push(ramp(1, 100))
    assert fifo.take() is None  # primed again only by a full prebuffer
    fifo.push(ramp(101, 60))
    assert taken(fifo) == list(range(1, 161))


def test_empty_pushes_are_ignored() -> None:
    fifo = PcmFifo(prebuffer=0)
    fifo.push(np.zeros(0, dtype=np.int16))
    assert len(fifo) == 0
    assert fifo.take() is None


def test_zero_prebuffer_still_needs_one_sample() -> None:
    fifo = PcmFifo(prebuffer=0)
    assert fifo.take() is None
    fifo.push(ramp(5, 1))
    out = fifo.take()
    assert out is not None
    assert out.tolist() == [5] + [0] * (FRAME - 1)


def test_overflow_drops_the_oldest_audio() -> None:
    fifo = PcmFifo(prebuffer=0, maximum=400)
    fifo.push(ramp(0, 300))
    fifo.push(ramp(300, 300))  # 200 too many: the first 200 go, partly out of a chunk
    assert len(fifo) == 400
    out = [fifo.take() for _ in range(3)]
    joined = np.concatenate([f for f in out if f is not None])
    assert joined[:400].tolist() == list(range(200, 600))
    assert not joined[400:].any()


def test_overflow_drops_whole_chunks() -> None:
    fifo = PcmFifo(prebuffer=0, maximum=2 * FRAME)
    for start in range(0, 5 * FRAME, FRAME):
        fifo.push(ramp(start, FRAME))
    assert len(fifo) == 2 * FRAME
    assert taken(fifo) == list(range(3 * FRAME, 4 * FRAME))
    assert taken(fifo) == list(range(4 * FRAME, 5 * FRAME))


def test_a_chunk_larger_than_the_maximum_keeps_its_newest_part() -> None:
    fifo = PcmFifo(prebuffer=0, maximum=FRAME)
    fifo.push(ramp(0, 50))
    fifo.push(ramp(50, 500))
    assert len(fifo) == FRAME
    assert taken(fifo) == list(range(390, 550))


def test_default_maximum_is_ten_frames() -> None:
    fifo = PcmFifo()
    for start in range(0, 30 * FRAME, FRAME):
        fifo.push(ramp(start, FRAME))
    assert len(fifo) == 10 * FRAME


def test_clear_empties_and_unprimes() -> None:
    fifo = PcmFifo(prebuffer=FRAME)
    fifo.push(ramp(0, 3 * FRAME))
    assert fifo.take() is not None
    fifo.clear()
    assert len(fifo) == 0
    assert fifo.take() is None
    fifo.push(ramp(7, 100))
    assert fifo.take() is None  # the prebuffer applies again after a clear
    fifo.push(ramp(107, 60))
    assert taken(fifo) == list(range(7, 167))


def test_pushed_arrays_are_not_modified() -> None:
    fifo = PcmFifo(prebuffer=0, maximum=FRAME)
    chunk = ramp(0, 300)
    fifo.push(chunk)
    fifo.take(100)
    assert chunk.tolist() == list(range(300))


@pytest.mark.parametrize(("prebuffer", "maximum"), [(-1, 100), (101, 100)])
def test_bad_sizes_are_refused(prebuffer: int, maximum: int) -> None:
    with pytest.raises(ValueError, match="prebuffer must be between 0 and maximum"):
        PcmFifo(prebuffer=prebuffer, maximum=maximum)
