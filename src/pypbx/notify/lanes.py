"""Per-call ordering of notifications (spec 2.3), with no knowledge of HTTP.

Each key (a CallId) gets a lane: a FIFO worked by one task, so everything about one call is
delivered in order and one at a time, while different calls proceed concurrently. Two kinds of
entries share a lane:

* queued jobs (fire-and-forget reports), run by the worker through the `run` callback;
* turns (steering requests): the worker waits until the caller, which does its own HTTP exchange in
  its own task, is done. So a live call's request waits for the reports queued ahead of it, and the
  reports queued after it wait for it; a caller that gives up (cancelled) just leaves its place.

A lane exists only while it has work: the worker removes it when the FIFO runs dry, so thousands of
finished calls leave nothing behind. Waiting jobs are bounded over all lanes; past the bound the
oldest waiting job is discarded, because a stale report matters less than a fresh one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

J = TypeVar("J")


class Discard(enum.Enum):
    """Why a job was never run to completion."""

    DROPPED = "dropped: report queue full"
    CLOSED = "notifier closed"
    CANCELLED = "cancelled: notifier closed before delivery"


@dataclass(eq=False, slots=True)
class _Queued(Generic[J]):
    job: J
    lane: _Lane[J]


@dataclass(eq=False, slots=True)
class _Turn:
    granted: asyncio.Future[bool]
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False, slots=True)
class _Lane(Generic[J]):
    entries: deque[_Queued[J] | _Turn] = field(default_factory=deque)
    current: _Queued[J] | None = None


class LaneScheduler(Generic[J]):
    """Runs jobs one at a time per key, concurrently across keys.

    `run(job)` does the work; `discard(job, why)` is told about every job that will never run
    (dropped for space, submitted after close, cancelled by close). Each submitted job ends in
    exactly one of the two. Must be used from one event loop thread.
    """

    def __init__(
        self,
        run: Callable[[J], Awaitable[None]],
        discard: Callable[[J, Discard], None],
        *,
        max_queued: int,
    ) -> None:
        self._run = run
        self._discard = discard
        self._max_queued = max_queued
        self._lanes: dict[Hashable, _Lane[J]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        # Every job waiting to start, oldest first, for dropping past the bound.
        self._queued: OrderedDict[_Queued[J], None] = OrderedDict()
        self._running = 0
        self._closed = False

    @property
    def queued(self) -> int:
        """Jobs waiting to start."""
        return len(self._queued)

    @property
    def pending(self) -> int:
        """Jobs not finished yet: waiting or running."""
        return len(self._queued) + self._running

    @property
    def lanes(self) -> int:
        """Keys with work in progress or waiting (steering turns included)."""
        return len(self._lanes)

    def submit(self, key: Hashable | None, job: J) -> None:
        """Queue `job` behind everything already queued for `key`; None means no ordering."""
        if self._closed:
            self._discard(job, Discard.CLOSED)
            return
        lane = self._lane(object() if key is None else key)
        entry = _Queued(job, lane)
        lane.entries.append(entry)
        self._queued[entry] = None
        if len(self._queued) > self._max_queued:
            oldest, _ = self._queued.popitem(last=False)
            oldest.lane.entries.remove(oldest)
            self._discard(oldest.job, Discard.DROPPED)

    @asynccontextmanager
    async def turn(self, key: Hashable | None) -> AsyncIterator[bool]:
        """Wait until every entry queued for `key` before this one is done; hold the lane inside.

        Yields False instead when the scheduler is closed (or closes while waiting): the caller
        should then not send. With key None there is nothing to wait for.
        """
        if self._closed or key is None:
            yield not self._closed
            return
        turn = _Turn(asyncio.get_running_loop().create_future())
        self._lane(key).entries.append(turn)
        try:
            granted = await turn.granted
            yield granted
        finally:
            if not turn.granted.done():
                turn.granted.cancel()  # tells the worker to skip this place
            turn.finished.set()

    async def close(self, timeout: float) -> None:
        """Refuse new work, let lanes finish for up to `timeout` s, then cancel what is left."""
        self._closed = True
        workers = set(self._workers)
        if not workers:
            return
        _, late = await asyncio.wait(workers, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    def _lane(self, key: Hashable) -> _Lane[J]:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            task = asyncio.get_running_loop().create_task(self._work(key, lane))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        return lane

    async def _work(self, key: Hashable, lane: _Lane[J]) -> None:
        try:
            while lane.entries:
                entry = lane.entries.popleft()
                if isinstance(entry, _Turn):
                    if not entry.granted.done():
                        entry.granted.set_result(True)
                        await entry.finished.wait()
                    continue
                del self._queued[entry]
                lane.current = entry
                self._running += 1
                try:
                    await self._run(entry.job)
                except Exception:  # a bug in one job must not stall the call's later ones
                    logger.exception("notification job failed")
                finally:
                    self._running -= 1
                lane.current = None
        except asyncio.CancelledError:
            self._abandon(lane)
            raise
        finally:
            # No await between the emptiness check above and this: nothing can slip in.
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    def _abandon(self, lane: _Lane[J]) -> None:
        """Account for everything a cancelled lane will not do."""
        if lane.current is not None:
            self._discard(lane.current.job, Discard.CANCELLED)
            lane.current = None
        while lane.entries:
            entry = lane.entries.popleft()
            if isinstance(entry, _Turn):
                if not entry.granted.done():
                    entry.granted.set_result(False)
            else:
                del self._queued[entry]
                self._discard(entry.job, Discard.CANCELLED)
