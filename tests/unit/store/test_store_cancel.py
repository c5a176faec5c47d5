"""A write cancelled half-way (a task stopped at shutdown) must stay a cancellation and must
not leave the database locked.

How it went wrong on SQLite: the cancellation reached the await of a statement after
BEGIN IMMEDIATE. SQLAlchemy then invalidates the connection and closes the sqlite3
connection, but the cursor of the interrupted statement was still alive, and closing a
sqlite3 connection with unfinalized statements leaves a "zombie" that keeps its open
transaction, and so the write lock, until that cursor is garbage collected. Every writer
after it waited out busy_timeout (10 s) and failed. And the rollback that followed ran the
engine's rollback listener, which read `conn.info` of the invalidated connection: that
raised PendingRollbackError ("Can't reconnect until invalid transaction is rolled back")
in place of the CancelledError, so the write-behind queues took the cancellation for a
failed batch and retried it change by change, each retry waiting out busy_timeout.

The cancellation is made to land deterministically: a `before_cursor_execute` listener
added after the engine's own (so after BEGIN IMMEDIATE went out) cancels the running task,
which then receives CancelledError at the await of that very statement. Garbage collection
is off meanwhile, as it mostly is in a tuned pypbx: nothing may depend on it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from pypbx.store import BindingRecord, CallHistoryRecord, ExtensionRecord, HistoryQuery, Store
from pypbx.store import store as store_module

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
QUICK = 2.0  # seconds: far below busy_timeout (10 s), far above a real write


def binding(ext: str, contact: str, cseq: int = 1) -> BindingRecord:
    return BindingRecord(
        ext, contact, "192.0.2.10:5060", "udp", T0 + timedelta(seconds=cseq), f"cid-{ext}", cseq
    )


def history(call_id: str) -> CallHistoryRecord:
    return CallHistoryRecord(
        call_id,
        T0,
        answer_time=None,
        end_time=None,
        direction="Internal",
        source="1000",
        destination="2000",
        dialed="2000",
        caller_id="1000",
        state=None,
        talk_duration=0.0,
    )


@pytest.fixture
def no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@pytest.fixture
async def exts(store: Store) -> Store:
    await store.add_extension(ExtensionRecord("1000", "SIP", username="1000"))
    return store


def cancel_at(store: Store, prefix: str) -> list[str]:
    """Cancel the task that runs the next statement starting with `prefix` (once)."""
    hits: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not hits and statement.lstrip().upper().startswith(prefix):
            hits.append(statement)
            task = asyncio.current_task()
            assert task is not None
            task.cancel()

    event.listen(store._engine.sync_engine, "before_cursor_execute", before)
    return hits


Write = Callable[[Store], Awaitable[None]]

WRITES: dict[str, tuple[str, Write]] = {
    "single statement": ("INSERT", lambda s: s.save_binding(binding("1000", "sip:x"))),
    # executemany: its cursor keeps the statement, the case that left the lock behind
    "registration batch": (
        "INSERT",
        lambda s: s.write_registrations(
            [binding("1000", "sip:x"), binding("1000", "sip:y")], [], {}
        ),
    ),
    "last statement of a batch": (
        "UPDATE",
        lambda s: s.write_registrations(
            [binding("1000", "sip:x"), binding("1000", "sip:y")],
            [("1000", "sip:z")],
            {"1000": ("192.0.2.1", "UA")},
        ),
    ),
    "history batch": (
        "INSERT",
        lambda s: s.write_history_batch([history("c0"), history("c1")], []),
    ),
}


@pytest.mark.parametrize("kind", list(WRITES))
async def test_a_cancelled_write_is_a_cancellation_and_leaves_no_lock(
    exts: Store, no_gc: None, kind: str
) -> None:
    prefix, write = WRITES[kind]
    hits = cancel_at(exts, prefix)
    with pytest.raises(asyncio.CancelledError):
        await write(exts)
    assert hits
    started = time.monotonic()
    async with asyncio.timeout(QUICK):  # the lock held: busy_timeout, 10 s
        await exts.save_binding(binding("1000", "sip:after"))
        await exts.start_history(history("c2"))
    assert time.monotonic() - started < QUICK
    assert [b.contact for b in await exts.list_bindings()] == ["sip:after"]  # nothing else
    assert [r.call_id for r in (await exts.query_history(HistoryQuery()))[1]] == ["c2"]


async def test_a_registration_batch_cancelled_in_its_transaction_is_queued_again(
    exts: Store, store_url: str, no_gc: None
) -> None:
    """The chain of the symptom, cut at its start: the batch task cancelled inside its
    transaction gives up the batch (queued again, for close to write) at once, instead of
    retrying it change by change against a lock nobody releases."""
    writer = exts.registrations
    hits = cancel_at(exts, "INSERT")
    writer.save(binding("1000", "sip:a"))
    writer.save(binding("1000", "sip:b"))
    task = writer._batches.task
    assert task is not None
    writer._batches.hurry()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hits and writer.pending == 2
    async with asyncio.timeout(QUICK):
        await exts.close()
    assert await contacts(store_url) == ["sip:a", "sip:b"]


async def test_a_batch_under_way_at_close_is_written_not_cancelled(
    exts: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Close used to see nothing pending (the batch under way is not counted) and cancel the
    task in the middle of its transaction. Now it waits for that batch."""
    writer = exts.registrations
    entered = asyncio.Event()
    release = asyncio.Event()
    original = exts.write_registrations

    async def slow(*args: Any) -> None:
        entered.set()
        await release.wait()
        await original(*args)

    monkeypatch.setattr(exts, "write_registrations", slow)
    writer.save(binding("1000", "sip:a"))
    writer._batches.hurry()
    await entered.wait()
    assert writer.pending == 0
    closing = asyncio.create_task(exts.close())
    await asyncio.sleep(0.1)
    assert not closing.done()
    release.set()
    async with asyncio.timeout(QUICK):
        await closing
    assert await contacts(store_url) == ["sip:a"]


async def test_close_gives_up_on_a_writer_that_does_not_finish(
    exts: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The safety net stays: a write that never ends costs close `_CLOSE_WAIT`, no more."""
    monkeypatch.setattr(store_module, "_CLOSE_WAIT", 0.2)

    async def hang(*args: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(exts, "write_registrations", hang)
    exts.registrations.save(binding("1000", "sip:a"))
    async with asyncio.timeout(QUICK):
        await exts.close()
    assert "the registration writer did not finish within 0.2 s" in caplog.messages


async def contacts(url: str) -> list[str]:
    reopened = await Store.open(url)
    try:
        return [b.contact for b in await reopened.list_bindings()]
    finally:
        await reopened.close()
