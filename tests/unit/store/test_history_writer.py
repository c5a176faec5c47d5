"""The call-history write-behind: batching, order, flush, failures, and the Store behind it.

The HistoryWriter is driven against a fake sink (to see exactly which transactions it makes)
and against the real Store on every backend under test (to see the rows land, and that every
history read flushes first).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from pypbx.store import AlreadyExistsError, CallHistoryRecord, HistoryQuery, Store
from pypbx.store.history_writer import DEFAULT_DELAY, HistoryWriter

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def rec(call_id: str, state: str | None = None, offset_s: float = 0.0) -> CallHistoryRecord:
    start = T0 + timedelta(seconds=offset_s)
    return CallHistoryRecord(
        call_id,
        start,
        answer_time=None,
        end_time=start + timedelta(seconds=5) if state else None,
        direction="Internal",
        source="1000",
        destination="2000",
        dialed="2000",
        caller_id="1000",
        state=state,
        talk_duration=5.0 if state else 0.0,
    )


class FakeSink:
    """Records every transaction; `fail_batches` makes write_history_batch raise."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[str], list[str]]] = []
        self.singles: list[tuple[str, str]] = []
        self.fail_batches = False
        self.refuse: set[str] = set()  # start_history raises AlreadyExistsError for these
        self.gate: asyncio.Event | None = None  # when set, batches wait for it

    async def write_history_batch(
        self, starts: Sequence[CallHistoryRecord], finishes: Sequence[CallHistoryRecord]
    ) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_batches:
            raise RuntimeError("database is locked")
        self.batches.append(([r.call_id for r in starts], [r.call_id for r in finishes]))

    async def start_history(self, rec: CallHistoryRecord) -> None:
        if rec.call_id in self.refuse:
            raise AlreadyExistsError(f"call {rec.call_id!r} already in history")
        self.singles.append(("start", rec.call_id))

    async def finish_history(self, rec: CallHistoryRecord) -> None:
        self.singles.append(("finish", rec.call_id))


@pytest.fixture
async def sink_writer() -> tuple[FakeSink, HistoryWriter]:
    sink = FakeSink()
    return sink, HistoryWriter(sink, delay=0.05)


# -- batching ---------------------------------------------------------------------------------


async def test_rows_of_many_calls_share_one_transaction(
    sink_writer: tuple[FakeSink, HistoryWriter],
) -> None:
    sink, writer = sink_writer
    writer.start(rec("a"))
    writer.start(rec("b"))
    writer.finish(rec("a", "CallerHungUp"))
    assert writer.pending == 3
    await asyncio.sleep(0)
    assert sink.batches == []  # nothing is written before the delay
    await asyncio.sleep(0.15)
    assert sink.batches == [(["a", "b"], ["a"])]
    assert writer.pending == 0
    await writer.close()


async def test_the_default_delay_is_a_tenth_of_a_second() -> None:
    assert DEFAULT_DELAY == 0.1


async def test_rows_queued_during_a_write_go_in_the_next_batch(
    sink_writer: tuple[FakeSink, HistoryWriter],
) -> None:
    sink, writer = sink_writer
    sink.gate = asyncio.Event()
    writer.start(rec("a"))
    await asyncio.sleep(0.1)  # the first batch is now waiting inside the sink
    writer.finish(rec("a", "Busy"))
    writer.start(rec("b"))
    sink.gate.set()
    await writer.flush()
    assert sink.batches == [(["a"], []), (["b"], ["a"])]
    await writer.close()


async def test_a_full_batch_does_not_wait_for_the_delay() -> None:
    sink = FakeSink()
    writer = HistoryWriter(sink, delay=30.0, max_batch=3)
    for name in "abc":
        writer.start(rec(name))
    await asyncio.wait_for(_until(lambda: bool(sink.batches)), 2.0)
    assert sink.batches == [(["a", "b", "c"], [])]
    await writer.close()


async def _until(condition: object) -> None:
    assert callable(condition)
    while not condition():
        await asyncio.sleep(0.01)


# -- flush and close ----------------------------------------------------------------------


async def test_flush_writes_at_once_and_waits_for_it() -> None:
    sink = FakeSink()
    writer = HistoryWriter(sink, delay=30.0)
    writer.start(rec("a"))
    await asyncio.wait_for(writer.flush(), 2.0)
    assert sink.batches == [(["a"], [])]
    await asyncio.wait_for(writer.flush(), 2.0)  # nothing queued: returns at once
    assert len(sink.batches) == 1
    await writer.close()


async def test_flush_of_an_idle_writer_starts_nothing() -> None:
    sink = FakeSink()
    writer = HistoryWriter(sink)
    await writer.flush()
    await writer.close()
    assert sink.batches == []


async def test_close_writes_what_is_queued_and_a_later_row_starts_again() -> None:
    sink = FakeSink()
    writer = HistoryWriter(sink, delay=30.0)
    writer.start(rec("a"))
    await asyncio.wait_for(writer.close(), 2.0)
    assert sink.batches == [(["a"], [])]
    writer.finish(rec("a", "Busy"))
    await asyncio.wait_for(writer.close(), 2.0)
    assert sink.batches == [(["a"], []), ([], ["a"])]


async def test_concurrent_flushes_all_return(sink_writer: tuple[FakeSink, HistoryWriter]) -> None:
    sink, writer = sink_writer
    writer.start(rec("a"))
    first = asyncio.ensure_future(writer.flush())
    writer.start(rec("b"))
    second = asyncio.ensure_future(writer.flush())
    await asyncio.wait_for(asyncio.gather(first, second), 2.0)
    assert [name for starts, _ in sink.batches for name in starts] == ["a", "b"]
    await writer.close()


# -- failures ---------------------------------------------------------------------------------


async def test_a_failed_batch_is_retried_row_by_row_in_order(
    sink_writer: tuple[FakeSink, HistoryWriter], caplog: pytest.LogCaptureFixture
) -> None:
    sink, writer = sink_writer
    sink.fail_batches = True
    sink.refuse = {"dup"}
    writer.start(rec("a"))
    writer.start(rec("dup"))
    writer.finish(rec("a", "Busy"))
    writer.finish(rec("dup", "Busy"))
    with caplog.at_level(logging.ERROR, logger="pypbx.store.history_writer"):
        await writer.flush()
    assert sink.batches == []
    # the bad row costs only itself; the order of the queue is kept
    assert sink.singles == [("start", "a"), ("finish", "a"), ("finish", "dup")]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["call history write failed (call dup)"]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], AlreadyExistsError)
    await writer.close()


async def test_the_writer_survives_a_failure(sink_writer: tuple[FakeSink, HistoryWriter]) -> None:
    sink, writer = sink_writer
    sink.fail_batches = True
    sink.refuse = {"x"}
    writer.start(rec("x"))
    await writer.flush()
    sink.fail_batches = False
    writer.start(rec("y"))
    await writer.flush()
    assert sink.batches == [(["y"], [])]
    await writer.close()


async def test_a_batch_cut_by_cancellation_is_written_by_the_next_task() -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()
    writer = HistoryWriter(sink, delay=0.0)
    writer.start(rec("a"))
    await asyncio.sleep(0.05)  # the batch is inside the sink, waiting for the gate
    task = writer._batches.task
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert writer.pending == 1
    sink.gate.set()
    writer.start(rec("b"))  # starts a new task, which writes both
    await asyncio.wait_for(writer.flush(), 2.0)
    assert sink.batches == [(["a", "b"], [])]
    await writer.close()


# -- against the Store --------------------------------------------------------------------


async def test_store_queries_see_queued_rows(store: Store) -> None:
    store.history.start(rec("s1", offset_s=0))
    store.history.start(rec("s2", offset_s=1))
    total, page = await store.query_history(HistoryQuery())
    assert (total, [r.call_id for r in page], [r.state for r in page]) == (
        2,
        ["s1", "s2"],
        [None, None],
    )
    store.history.finish(rec("s1", "CallerHungUp", offset_s=0))
    total, page = await store.query_history(HistoryQuery())
    assert page == [rec("s1", "CallerHungUp", offset_s=0), rec("s2", offset_s=1)]


async def test_store_id_lookups_see_queued_rows(store: Store) -> None:
    store.history.start(rec("q1"))
    assert await store.call_id_exists("q1")
    store.history.finish(rec("q2", "NotFound"))  # an end without a start inserts
    assert await store.taken_call_ids(["q1", "q2", "q3", "q1"]) == {"q1", "q2"}


async def test_store_taken_call_ids_in_chunks(store: Store) -> None:
    await store.write_history_batch([rec(f"k{i:04d}") for i in range(1200)], [])
    asked = [f"k{i:04d}" for i in range(0, 2400, 2)]
    taken = await store.taken_call_ids(asked)
    assert taken == {f"k{i:04d}" for i in range(0, 1200, 2)}
    assert await store.taken_call_ids([]) == set()


async def test_store_batch_keeps_start_before_finish_and_last_finish(store: Store) -> None:
    await store.write_history_batch(
        [rec("b1"), rec("b2", offset_s=1)],
        [rec("b1", "Busy"), rec("b3", "NotFound", 2), rec("b1", "CallerHungUp")],
    )
    _, page = await store.query_history(HistoryQuery())
    assert [(r.call_id, r.state) for r in page] == [
        ("b1", "CallerHungUp"),
        ("b2", None),
        ("b3", "NotFound"),
    ]


async def test_store_batch_is_all_or_nothing(store: Store) -> None:
    await store.start_history(rec("old"))
    with pytest.raises(Exception):  # noqa: B017 (IntegrityError, wrapped per driver)
        await store.write_history_batch([rec("new", offset_s=1), rec("old")], [])
    assert await store.query_history(HistoryQuery()) == (1, [rec("old")])


async def test_store_writer_logs_a_reused_call_id_and_writes_the_rest(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await store.start_history(rec("old", "Busy"))
    store.history.start(rec("old"))
    store.history.start(rec("fresh", offset_s=1))
    with caplog.at_level(logging.ERROR, logger="pypbx.store.history_writer"):
        _, page = await store.query_history(HistoryQuery())
    assert [(r.call_id, r.state) for r in page] == [("old", "Busy"), ("fresh", None)]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "call history write failed (call old)"
    ]


async def test_store_close_writes_queued_rows(store: Store, store_url: str) -> None:
    other = await Store.open(store_url)  # `store` has emptied the database
    other.history.start(rec("c1"))
    other.history.finish(rec("c1", "CallerHungUp"))
    await other.close()
    assert await store.query_history(HistoryQuery()) == (1, [rec("c1", "CallerHungUp")])
