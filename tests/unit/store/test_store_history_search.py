"""The indexes behind GetCallHistory's General and State filters.

The filters' results are specified in test_store_history.py; here: the FTS5 expression
built for General, that the SQLite index (FTS5 table plus queue, kept by triggers) stays in
step with call_history through every kind of write, that results never depend on the
index, and that the queries use their indexes instead of scanning the table.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from pypbx.store import CallHistoryRecord, HistoryQuery, Store
from pypbx.store.history_filter import fts_query, history_conditions
from pypbx.store.schema import call_history

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SEARCHED = ("source", "destination", "dialed", "caller_id", "call_id")


@pytest.mark.parametrize(
    ("general", "expected"),
    [
        ("4321", '"432" AND "321"'),
        ("abcdef", '"abc" AND "def"'),
        ("abcdefg", '"abc" AND "def" AND "efg"'),  # the last trigram covers the tail
        ("aaaaaa", '"aaa"'),  # each trigram once
        ('a"bcd', '"a""b" AND "bcd"'),  # FTS5 string quoting
        ("50%_o", '"50%" AND "%_o"'),  # LIKE wildcards are plain text to FTS5
        ("Ärger", '"Ärg" AND "ger"'),  # characters, not bytes
        ("abc", '"abc"'),
        ("ab", None),  # no trigram: the LIKE alone
        ("", None),
        ("ab\x00cd", None),  # NUL does not survive FTS5's query parser
    ],
)
def test_fts_query(general: str, expected: str | None) -> None:
    assert fts_query(general) == expected


def test_fts_query_reads_at_most_six_trigrams_first_and_last_included() -> None:
    general = "abcdefghijklmnopqrstuvwxyz0123"
    query = fts_query(general)
    assert query is not None
    grams = [gram.strip('"') for gram in query.split(" AND ")]
    assert len(grams) == 6
    assert grams[0] == "abc" and grams[-1] == "123"
    assert all(gram in general for gram in grams)


# -- the SQLite index kept in step with the table ----------------------------------------


@pytest.fixture
async def lite(migrated_sqlite_file: Path, tmp_path: Path) -> AsyncIterator[Store]:
    """A store on SQLite only: the FTS5 table and its triggers are SQLite's."""
    path = tmp_path / "pypbx.db"
    shutil.copyfile(migrated_sqlite_file, path)
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        yield store
    finally:
        await store.close()


def _engine(store: Store) -> AsyncEngine:
    return store._engine


def _row(rng: random.Random, number: int) -> dict[str, Any]:
    """A history row whose searched columns come from a small alphabet, so that short
    random strings match some rows (in any case) and miss others."""

    def word() -> str:
        return "".join(rng.choice("aAbB1% _") for _ in range(rng.randrange(0, 7)))

    start = (T0 + timedelta(seconds=number)).replace(tzinfo=None)
    return {
        "call_id": f"{word()}#{number}",
        "start_time": start,
        "answer_time": None,
        "end_time": None,
        "direction": "Internal",
        "source": word(),
        "destination": word(),
        "dialed": word(),
        "caller_id": word(),
        "state": rng.choice([None, "Busy", "CallerHungUp"]),
        "type": "Audio",
        "ring_duration": 0.0,
        "talk_duration": 0.0,
    }


async def _matches(engine: AsyncEngine, general: str, text_index: bool) -> list[str]:
    conditions = history_conditions(HistoryQuery(general=general), text_index)
    statement = sa.select(call_history.c.call_id).where(*conditions).order_by(call_history.c.id)
    async with engine.connect() as conn:
        return list((await conn.execute(statement)).scalars())


def _flush_and_check(path: Path) -> None:
    """Index whatever is queued, then have FTS5 compare its index with call_history.

    FTS5's integrity-check (rank 1) recomputes the index from the content table
    (call_history), so it passes only if the triggers kept every row, under its current
    values, in exactly one of the index and the queue. A mismatch raises DatabaseError.
    """
    columns = ", ".join(SEARCHED)
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            f"INSERT INTO call_history_search(rowid, {columns}) SELECT id, {columns}"
            " FROM call_history WHERE id IN (SELECT id FROM call_history_search_queue)"
        )
        raw.execute("DELETE FROM call_history_search_queue")
        raw.execute("COMMIT")
        # rank 1: check against the content table too, not only the index's own structure.
        raw.execute(
            "INSERT INTO call_history_search(call_history_search, rank)"
            " VALUES ('integrity-check', 1)"
        )


async def test_index_follows_every_kind_of_write(lite: Store, tmp_path: Path) -> None:
    """Inserts (more than one queue's worth), updates of searched and other columns, of
    queued and of indexed rows, id changes, upserts, deletes: General returns exactly what
    the LIKE alone returns, and the index matches the table."""
    rng = random.Random(5)
    engine = _engine(lite)
    rows = [_row(rng, n) for n in range(1300)]
    async with engine.begin() as conn:
        for first in range(0, len(rows), 100):  # several statements, several transactions
            await conn.execute(sa.insert(call_history), rows[first : first + 100])
    c = call_history.c
    async with engine.begin() as conn:
        ids = list((await conn.execute(sa.select(c.id))).scalars())
        for row_id in rng.sample(ids, 150):
            column = rng.choice(SEARCHED)
            await conn.execute(
                sa.update(call_history)
                .where(c.id == row_id)
                .values({column: f"{column}-Ab{row_id}"})
            )
        await conn.execute(sa.update(call_history).where(c.id < 40).values(state="Error"))
        await conn.execute(sa.update(call_history).where(c.id == ids[-1]).values(id=10_000))
        await conn.execute(sa.update(call_history).where(c.id == ids[3]).values(id=20_000))
        await conn.execute(sa.delete(call_history).where(c.id.in_(rng.sample(ids[5:-5], 80))))
        # A queued row leaves and its id comes back (SQLite reuses the highest id when that
        # row is deleted): the queue must not still hold it.
        await conn.execute(sa.delete(call_history).where(c.id == 20_000))
        await conn.execute(sa.insert(call_history).values(id=20_000, **_row(rng, 20_000)))
    for n in range(1300, 1310):  # finish: the upsert's update path, then its insert path
        await lite.finish_history(
            CallHistoryRecord(
                f"fin{n}", T0, T0, T0, "Internal", "aB1", "1b", "1b", "x", "CallerHungUp"
            )
        )
        await lite.finish_history(
            CallHistoryRecord(
                f"fin{n}", T0, T0, T0, "Internal", "Zz9", "1b", "1b", "x", "CallerHungUp"
            )
        )
    probes = {"abb", "AB1", "a_b", "1% ", "%_a", "b b", "zz9", "ab1", "-ab", "Ab10", "#12"}
    probes |= {
        "".join(rng.choice("aAbB1% _") for _ in range(rng.randrange(3, 6))) for _ in range(60)
    }
    for general in sorted(probes):
        expected = await _matches(engine, general, text_index=False)
        assert await _matches(engine, general, text_index=True) == expected, general
    assert await _matches(engine, "Zz9", text_index=True) == [f"fin{n}" for n in range(1300, 1310)]
    _flush_and_check(Path(str(engine.url.database)))


async def test_running_and_fresh_calls_are_found_before_indexing(lite: Store) -> None:
    """A row is searchable from its first write on, while it waits in the queue."""
    await lite.start_history(
        CallHistoryRecord("run1", T0, None, None, "Internal", "1001", "1002", "1002", "Zoë", None)
    )
    total, page = await lite.query_history(HistoryQuery(general="ZOë"))
    assert (total, [r.call_id for r in page]) == (1, ["run1"])
    total, _ = await lite.query_history(HistoryQuery(general="zoe"))
    assert total == 0


# -- query plans: the filters must not scan the table -----------------------------------


def _plan(store: Store, q: HistoryQuery, text_index: bool) -> list[str]:
    conditions = history_conditions(q, text_index)
    page = (
        sa.select(call_history)
        .where(*conditions)
        .order_by(call_history.c.start_time, call_history.c.id)
        .limit(20)
    )
    count = sa.select(sa.func.count()).select_from(call_history).where(*conditions)
    details = []
    path = Path(str(_engine(store).url.database))
    with closing(sqlite3.connect(path)) as raw:
        for statement in (count, page):
            compiled = statement.compile(
                dialect=_engine(store).dialect, compile_kwargs={"literal_binds": True}
            )
            details += [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {compiled}")]
    return details


def _scans_call_history(plan: list[str]) -> bool:
    return any(step.split(" ")[:2] == ["SCAN", "call_history"] for step in plan)


async def test_state_filter_uses_its_index(lite: Store) -> None:
    plan = _plan(lite, HistoryQuery(state="CallerHangUp"), text_index=True)
    assert not _scans_call_history(plan), plan
    assert all("ix_call_history_lower_state" in step for step in plan), plan


async def test_general_filter_uses_the_fts_index(lite: Store) -> None:
    plan = _plan(lite, HistoryQuery(general="4321"), text_index=True)
    assert not _scans_call_history(plan), plan
    assert any("call_history_search VIRTUAL TABLE" in step for step in plan), plan
    assert "USE TEMP B-TREE FOR ORDER BY" in plan  # sorting the few matches, not the table


async def test_short_general_scans(lite: Store) -> None:
    """Below three characters there is no trigram to look up: a scan, as before."""
    assert _scans_call_history(_plan(lite, HistoryQuery(general="43"), text_index=True))
