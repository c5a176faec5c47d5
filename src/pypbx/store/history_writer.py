"""Write-behind for call history: the rows of many calls go out in one transaction.

Every call writes its history row twice, when it starts and when it ends. One transaction
per write cost about as much CPU as all of the call's SIP work (SQLAlchemy statement
building, and a BEGIN/COMMIT round trip through the driver's thread each), so the call
path only queues the row here and one background task writes whatever has queued, in a
single transaction, `delay` seconds after the first of it was queued (or at once when a
reader flushes, or when `max_batch` rows wait; rows queued during a write go in the next).

Order is kept where it matters: a call queues its end only after its start, batches are
written one after the other, and a batch inserts its starts before it writes its ends (if
it must fall back to one row at a time, it keeps the queue's order). Readers of
the history flush first (the Store does so in every history read), so the API never shows
a row older than a call that has already ended.

What a crash costs: at most the rows queued in the last `delay` seconds. A call whose start
row was lost leaves no row at all; one whose end row was lost keeps its started row, which
the next startup closes as Error like any call cut short by a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from pypbx.store.batch_task import BatchTask
from pypbx.store.records import CallHistoryRecord

logger = logging.getLogger(__name__)

DEFAULT_DELAY = 0.1  # seconds a queued row may wait for others to share its transaction
DEFAULT_MAX_BATCH = 500  # rows that trigger a write at once, without waiting for the delay


class HistorySink(Protocol):
    """Where the rows go: the Store, or a fake in tests."""

    async def write_history_batch(
        self, starts: Sequence[CallHistoryRecord], finishes: Sequence[CallHistoryRecord]
    ) -> None:
        """Insert `starts`, then upsert `finishes`, in one transaction (all or nothing)."""
        ...

    async def start_history(self, rec: CallHistoryRecord) -> None: ...

    async def finish_history(self, rec: CallHistoryRecord) -> None: ...


class HistoryWriter:
    """Queues call-history rows and writes them in batches from one background task.

    The task starts with the first queued row (it needs a running event loop) and stops in
    `close()`, which writes what is still queued. `start()` and `finish()` never block and
    never fail: a row that cannot be written is logged, as a failed write always was.
    """

    def __init__(
        self,
        sink: HistorySink,
        *,
        delay: float = DEFAULT_DELAY,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._sink = sink
        self._max_batch = max_batch
        self._queue: list[tuple[bool, CallHistoryRecord]] = []  # (is the start row, row)
        self._queued = 0  # rows queued so far
        self._done = 0  # rows written (or given up on) so far, in queue order
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (rows to wait for, ...)
        self._batches = BatchTask(self._write_queued, delay=delay, name="call-history-writer")

    @property
    def pending(self) -> int:
        """Rows queued but not written yet."""
        return self._queued - self._done

    def start(self, rec: CallHistoryRecord) -> None:
        """Queue the insert of a call's row as the call starts."""
        self._put(True, rec)

    def finish(self, rec: CallHistoryRecord) -> None:
        """Queue the final row of a call (an update, or an insert if it never started)."""
        self._put(False, rec)

    async def flush(self) -> None:
        """Return once every row queued before this call has been written (or logged)."""
        if self._done >= self._queued:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, waiter))
        self._batches.kick(hurry=True)
        await asyncio.shield(waiter)

    async def close(self) -> None:
        """Write everything queued, then stop the task (a later row starts it again)."""
        while self._done < self._queued:  # rows queued while flushing are written too
            await self.flush()
        await self._batches.stop()

    # -- the task ------------------------------------------------------------------------

    def _put(self, is_start: bool, rec: CallHistoryRecord) -> None:
        self._queue.append((is_start, rec))
        self._queued += 1
        self._batches.kick(hurry=len(self._queue) >= self._max_batch)

    async def _write_queued(self) -> None:
        batch, self._queue = self._queue, []
        if batch:
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                self._queue[:0] = batch  # not written: a later task writes it
                raise
            self._done += len(batch)
        self._release_waiters()

    async def _write(self, batch: list[tuple[bool, CallHistoryRecord]]) -> None:
        """One transaction for the batch; if it fails, each row on its own, in order, so one
        bad row (a call id already in the history) costs only itself."""
        starts = [rec for is_start, rec in batch if is_start]
        finishes = [rec for is_start, rec in batch if not is_start]
        try:
            await self._sink.write_history_batch(starts, finishes)
            return
        except Exception as exc:
            if len(batch) > 1:
                logger.debug("history batch of %d rows failed (%s): row by row", len(batch), exc)
            else:
                logger.debug("history write failed (%s): trying once more", exc)
        for is_start, rec in batch:
            try:
                if is_start:
                    await self._sink.start_history(rec)
                else:
                    await self._sink.finish_history(rec)
            except Exception:
                logger.exception("call history write failed (call %s)", rec.call_id)

    def _release_waiters(self) -> None:
        waiting: list[tuple[int, asyncio.Future[None]]] = []
        for target, waiter in self._waiters:
            if self._done >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting
        if waiting:
            self._batches.hurry()
