"""Call-history query benchmark: GetCallHistory's store query over a large history.

Fills a fresh store (SQLite by default, or --db for PostgreSQL) with N synthetic calls
spread over a year (10 000 extensions, every result state), then times the queries the
command issues for typical requests: the first page, a deep page, one extension's calls,
a day's window, a state, the free-text `General` filter, and one CallId. Each query runs
`--repeat` times; the median is reported. The reference is the same store's bare
`SELECT count(*)`, so the ratios say what the filters cost beyond touching the table.

    .venv/bin/python bench/history_query.py [--rows 1000000] [--db URL] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from pypbx.store.records import HistoryQuery
from pypbx.store.schema import call_history
from pypbx.store.store import Store

STATES = ["CallerHungUp", "CalleeHungUp", "Busy", "NotAnswered", "Cancelled", "Error"]
START = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 20_000


def synthetic_rows(count: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        start = START + timedelta(seconds=i * 31_536_000 / count)
        talk = rng.uniform(0, 600)
        rows.append(
            {
                "call_id": f"c{i:07d}",
                "start_time": start.replace(tzinfo=None),
                "answer_time": (start + timedelta(seconds=3)).replace(tzinfo=None),
                "end_time": (start + timedelta(seconds=3 + talk)).replace(tzinfo=None),
                "direction": "Internal",
                "source": str(1000 + rng.randrange(10_000)),
                "destination": str(1000 + rng.randrange(10_000)),
                "dialed": str(1000 + rng.randrange(10_000)),
                "caller_id": f"Caller {rng.randrange(10_000)}",
                "state": rng.choice(STATES),
                "type": "Audio",
                "ring_duration": 3.0,
                "talk_duration": round(talk, 3),
            }
        )
    return rows


async def fill(store: Store, count: int) -> float:
    started = time.perf_counter()
    engine = store._engine  # the benchmark writes in bulk, past the one-row API
    for first in range(0, count, BATCH):
        rows = synthetic_rows(min(BATCH, count - first), seed=first)
        for n, row in enumerate(rows):
            row["call_id"] = f"c{first + n:07d}"
            row["start_time"] = (
                START + timedelta(seconds=(first + n) * 31_536_000 / count)
            ).replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(sa.insert(call_history), rows)
    return time.perf_counter() - started


async def timed(action: Callable[[], Awaitable[object]], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def run(rows: int, db_url: str | None, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = db_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
        store = await Store.open(url)
        try:
            print(f"filling {rows} calls ...", file=sys.stderr)
            seconds = await fill(store, rows)
            print(f"filled in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)", file=sys.stderr)
            middle = START + timedelta(days=180)
            queries: dict[str, HistoryQuery] = {
                "first page (20)": HistoryQuery(),
                "page 1000 (20)": HistoryQuery(page=1000),
                "one extension": HistoryQuery(source="4321"),
                "one day": HistoryQuery(from_time=middle, to_time=middle + timedelta(days=1)),
                "state Busy": HistoryQuery(state="Busy"),
                "General '4321'": HistoryQuery(general="4321"),
                "one CallId": HistoryQuery(call_id=f"c{rows // 2:07d}"),
            }

            async def bare_count() -> object:
                async with store._engine.connect() as conn:
                    return (
                        await conn.execute(sa.select(sa.func.count()).select_from(call_history))
                    ).scalar()

            reference = await timed(bare_count, repeat)
            print(f"{'query':<18} {'ms':>9} {'x count(*)':>11} {'matches':>9}")
            print(f"{'count(*) (ref)':<18} {reference:9.1f} {1.0:11.2f}")
            for name, query in queries.items():
                total, _ = await store.query_history(query)

                async def action(query: HistoryQuery = query) -> object:
                    return await store.query_history(query)

                ms = await timed(action, repeat)
                print(f"{name:<18} {ms:9.1f} {ms / reference:11.2f} {total:9d}")
                line = {"bench": "history_query", "rows": rows, "query": name, "ms": round(ms, 2)}
                print(json.dumps(line), file=sys.stderr)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temporary SQLite)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.db, args.repeat))


if __name__ == "__main__":
    main()
