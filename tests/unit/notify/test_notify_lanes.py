"""LaneScheduler without HTTP: per-key order, turns, cleanup, the queue bound, close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pypbx.notify.lanes import Discard, LaneScheduler


class Jobs:
    """Records runs and discards; a job named in `gates` waits for its event."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.started: list[str] = []
        self.discarded: list[tuple[str, Discard]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0
        self.max_running = 0

    async def run(self, job: str) -> None:
        self.started.append(job)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            gate = self.gates.get(job)
            if gate is not None:
                await gate.wait()
            else:
                await asyncio.sleep(0)
            if job.startswith("boom"):
                raise RuntimeError(job)
            self.ran.append(job)
        finally:
            self.running -= 1

    def discard(self, job: str, why: Discard) -> None:
        self.discarded.append((job, why))

    def gate(self, job: str) -> asyncio.Event:
        return self.gates.setdefault(job, asyncio.Event())


def scheduler(jobs: Jobs, max_queued: int = 100) -> LaneScheduler[str]:
    return LaneScheduler(jobs.run, jobs.discard, max_queued=max_queued)


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def test_one_key_runs_in_order_one_at_a_time() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    for i in range(20):
        lanes.submit("call-1", f"j{i}")
    assert lanes.pending == 20 and lanes.queued == 20 and lanes.lanes == 1
    await until(lambda: lanes.pending == 0)
    assert jobs.ran == [f"j{i}" for i in range(20)]
    assert jobs.max_running == 1
    assert lanes.lanes == 0


async def test_keys_run_concurrently() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    jobs.gate("a1")
    jobs.gate("b1")
    lanes.submit("A", "a1")
    lanes.submit("B", "b1")
    await until(lambda: jobs.running == 2)
    assert lanes.queued == 0 and lanes.pending == 2
    jobs.gates["a1"].set()
    jobs.gates["b1"].set()
    await until(lambda: lanes.pending == 0)
    assert sorted(jobs.ran) == ["a1", "b1"]


async def test_none_key_jobs_are_independent() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    jobs.gate("x")
    lanes.submit(None, "x")
    lanes.submit(None, "y")
    await until(lambda: "y" in jobs.ran)
    assert jobs.ran == ["y"]
    jobs.gates["x"].set()
    await until(lambda: lanes.lanes == 0)


async def test_failing_job_does_not_stall_the_lane(caplog: pytest.LogCaptureFixture) -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    lanes.submit("A", "boom1")
    lanes.submit("A", "after")
    await until(lambda: lanes.pending == 0)
    assert jobs.ran == ["after"]
    assert "notification job failed" in caplog.text


async def test_turn_waits_for_jobs_ahead_and_holds_jobs_behind() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    gate = jobs.gate("before")
    lanes.submit("A", "before")
    order: list[str] = []

    async def steer() -> None:
        async with lanes.turn("A") as granted:
            assert granted
            order.append("turn-start")
            await asyncio.sleep(0.02)
            order.append("turn-end")

    task = asyncio.create_task(steer())
    await until(lambda: jobs.started == ["before"])
    lanes.submit("A", "after")
    await asyncio.sleep(0.02)
    assert order == []
    gate.set()
    await task
    await until(lambda: lanes.pending == 0)
    assert jobs.ran == ["before", "after"]
    assert order == ["turn-start", "turn-end"]
    assert lanes.lanes == 0


async def test_turn_on_idle_key_is_granted_at_once() -> None:
    lanes = scheduler(Jobs())
    async with asyncio.timeout(1), lanes.turn("A") as granted:
        assert granted
        assert lanes.lanes == 1
    await until(lambda: lanes.lanes == 0)


async def test_turn_with_none_key_does_not_wait() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    async with lanes.turn(None) as granted:
        assert granted
        assert lanes.lanes == 0


async def test_cancelled_turn_gives_up_its_place() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    gate = jobs.gate("first")
    lanes.submit("A", "first")

    async def steer() -> None:
        async with lanes.turn("A"):
            raise AssertionError("must not be granted")

    task = asyncio.create_task(steer())
    await until(lambda: jobs.started == ["first"])
    lanes.submit("A", "second")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await until(lambda: lanes.pending == 0 and lanes.lanes == 0)
    assert jobs.ran == ["first", "second"]


async def test_exception_inside_turn_releases_the_lane() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    with pytest.raises(KeyError):
        async with lanes.turn("A"):
            lanes.submit("A", "behind")
            raise KeyError("x")
    await until(lambda: lanes.pending == 0)
    assert jobs.ran == ["behind"]


async def test_queue_bound_drops_the_oldest_waiting_job() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs, max_queued=3)
    gate = jobs.gate("a0")
    lanes.submit("A", "a0")
    await until(lambda: jobs.started == ["a0"])
    for name in ("a1", "b1", "a2", "b2", "a3"):
        lanes.submit("B" if name.startswith("b") else "A", name)
    assert jobs.discarded == [("a1", Discard.DROPPED), ("b1", Discard.DROPPED)]
    assert lanes.queued == 3 and lanes.pending == 4
    gate.set()
    await until(lambda: lanes.pending == 0)
    assert sorted(jobs.ran) == ["a0", "a2", "a3", "b2"]
    assert [j for j in jobs.ran if j.startswith("a")] == ["a0", "a2", "a3"]
    assert lanes.lanes == 0


async def test_close_lets_work_finish() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    for i in range(5):
        lanes.submit("A", f"j{i}")
    await lanes.close(timeout=2)
    assert jobs.ran == [f"j{i}" for i in range(5)]
    assert jobs.discarded == []


async def test_close_cancels_after_timeout() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    jobs.gate("stuck")
    lanes.submit("A", "stuck")
    lanes.submit("A", "queued")
    results: list[bool] = []

    async def steer() -> None:
        async with lanes.turn("A") as granted:
            results.append(granted)

    task = asyncio.create_task(steer())
    await until(lambda: jobs.started == ["stuck"])
    await lanes.close(timeout=0.05)
    await task
    assert jobs.discarded == [("stuck", Discard.CANCELLED), ("queued", Discard.CANCELLED)]
    assert results == [False]
    assert lanes.pending == 0 and lanes.lanes == 0


async def test_after_close_jobs_are_discarded_and_turns_refused() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs)
    await lanes.close(timeout=1)
    lanes.submit("A", "late")
    assert jobs.discarded == [("late", Discard.CLOSED)]
    async with lanes.turn("A") as granted:
        assert not granted
    async with lanes.turn(None) as granted:
        assert not granted


async def test_thousands_of_keys_leave_nothing_behind() -> None:
    jobs = Jobs()
    lanes = scheduler(jobs, max_queued=10_000)
    for i in range(3000):
        lanes.submit(f"call-{i}", f"j{i}")
    await until(lambda: lanes.pending == 0, timeout=10)
    assert len(jobs.ran) == 3000
    await until(lambda: lanes.lanes == 0)
