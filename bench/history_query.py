"""Call-history benchmark: GetCallHistory's store query over a large history, and the
cost of writing history rows.

Fills a fresh store (SQLite by default, or --db for PostgreSQL) with N synthetic calls
spread over a year (10 000 extensions, every result state), then times the queries the
command issues for typical requests: the first page, a deep page, one extension's calls,
a day's window, a state (first and a deep page), the free-text `General` filter (a short
selective string, a mixed-case one matching 1% of the calls, and one below the 3-character
trigram threshold), and one CallId. Each query (the total count plus one page, as the
command runs it) is repeated `--repeat` times and the median reported. The reference is
the same store's bare `SELECT count(*)`, so the ratios say what the filters cost beyond
touching the table. On PostgreSQL the fill is followed by VACUUM ANALYZE, the state
autovacuum keeps a live table in; SQLite gets no ANALYZE, as pypbx never runs one.

Then the writes, on the filled store (each call writes its row twice: inserted at setup,
upserted by call id at hang-up):
- `fill rows/s`: the bulk fill itself (20 000 rows per transaction);
- `Store calls/s`: `--write-calls` calls through Store.start_history/finish_history, one
  after the other (one transaction per write);
- `SQL us/call 1/tx` and `SQL us/call 100/tx` (SQLite only): the same two statements in
  plain sqlite3, CPU microseconds per call, one transaction per write or 100 calls per
  transaction (as a write-behind batcher does). These isolate what the schema (indexes,
  triggers) costs a write from what the Python layers around it cost.

`--save FILE` keeps the figures as JSON; `--baseline FILE` prints them next to a saved run
(e.g. before and after a schema change); "gain" is how many times better "now" is.

    .venv/bin/python bench/history_query.py [--rows 1000000] [--db URL] [--repeat 5]
        [--write-calls 10000] [--save after.json] [--baseline before.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from pypbx.store.records import CallHistoryRecord, HistoryQuery
from pypbx.store.schema import call_history
from pypbx.store.store import Store

STATES = ["CallerHungUp", "CalleeHungUp", "Busy", "NotAnswered", "Cancelled", "Error"]
START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_S = 31_536_000
BATCH = 20_000
# Figures where more is better (the others are times).
RATES = ("fill rows/s", "Store calls/s")
INSERT_COLUMNS = (
    "call_id", "start_time", "answer_time", "end_time", "direction", "source", "destination",
    "dialed", "caller_id", "state", "type", "ring_duration", "talk_duration",
)  # fmt: skip


def synthetic_rows(count: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        start = START + timedelta(seconds=i * YEAR_S / count)
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
            row["start_time"] = (START + timedelta(seconds=(first + n) * YEAR_S / count)).replace(
                tzinfo=None
            )
        async with engine.begin() as conn:
            await conn.execute(sa.insert(call_history), rows)
    return time.perf_counter() - started


async def write_rate(store: Store, calls: int) -> float:
    """Calls per second through start_history + finish_history, one call at a time."""
    rng = random.Random(11)
    begin = START + timedelta(seconds=YEAR_S)
    started = time.perf_counter()
    for i in range(calls):
        at = begin + timedelta(seconds=i)
        source, destination = str(1000 + rng.randrange(10_000)), str(1000 + rng.randrange(10_000))
        record = CallHistoryRecord(
            f"w{i:07d}", at, None, None, "Internal", source, destination, destination,
            f"Caller {source}", None,
        )  # fmt: skip
        await store.start_history(record)
        record.answer_time = at + timedelta(seconds=3)
        record.end_time = at + timedelta(seconds=60)
        record.state = rng.choice(STATES)
        record.ring_duration, record.talk_duration = 3.0, 57.0
        await store.finish_history(record)
    return calls / (time.perf_counter() - started)


def _sql_statements() -> tuple[str, str]:
    names = ", ".join(INSERT_COLUMNS)
    insert = f"INSERT INTO call_history ({names}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"
    updates = ", ".join(f"{name} = excluded.{name}" for name in INSERT_COLUMNS[1:])
    return insert, f"{insert} ON CONFLICT (call_id) DO UPDATE SET {updates}"


def sql_write_cost(path: Path, calls: int, per_transaction: int, tag: str) -> float:
    """CPU microseconds per call for its two history writes in plain sqlite3."""
    insert, upsert = _sql_statements()
    rng = random.Random(13)
    base = START + timedelta(seconds=2 * YEAR_S)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        started = time.process_time()
        for first in range(0, calls, per_transaction):
            starts, ends = [], []
            for i in range(first, min(first + per_transaction, calls)):
                at = (base + timedelta(seconds=i)).replace(tzinfo=None)
                src, dst = str(1000 + rng.randrange(10_000)), str(1000 + rng.randrange(10_000))
                row = [f"{tag}{i:07d}", str(at), None, None, "Internal", src, dst, dst]
                starts.append((*row, f"Caller {src}", None, "Audio", 0.0, 0.0))
                row[2:4] = [str(at + timedelta(seconds=3)), str(at + timedelta(seconds=60))]
                ends.append((*row, f"Caller {src}", rng.choice(STATES), "Audio", 3.0, 57.0))
            if per_transaction == 1:
                for statement, values in ((insert, starts[0]), (upsert, ends[0])):
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(statement, values)
                    conn.execute("COMMIT")
            else:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, starts)
                conn.executemany(upsert, ends)
                conn.execute("COMMIT")
        return (time.process_time() - started) / calls * 1e6
    finally:
        conn.close()


async def timed(action: Callable[[], Awaitable[object]], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def queries(rows: int) -> dict[str, HistoryQuery]:
    middle = START + timedelta(days=180)
    return {
        "first page (20)": HistoryQuery(),
        "page 1000 (20)": HistoryQuery(page=1000),
        "one extension": HistoryQuery(source="4321"),
        "one day": HistoryQuery(from_time=middle, to_time=middle + timedelta(days=1)),
        "state Busy": HistoryQuery(state="Busy"),
        "state Busy p1000": HistoryQuery(state="busy", page=1000),
        "General '4321'": HistoryQuery(general="4321"),
        "General 'caller 43'": HistoryQuery(general="caller 43"),
        "General '43'": HistoryQuery(general="43"),
        "one CallId": HistoryQuery(call_id=f"c{rows // 2:07d}"),
    }


def report(name: str, value: float, before: dict[str, float], ref: float | None) -> None:
    """One table row; `ref` (count(*) ms) gives a query its ratio column."""
    ratio = f"{value / ref:11.2f}" if ref else " " * 11
    line = f"{name:<20} {value:10.1f} {ratio}"
    if name in before:
        gain = value / before[name] if name in RATES else before[name] / value
        line += f" {before[name]:10.1f} {gain:8.2f}x"
    print(line)


async def run(args: argparse.Namespace) -> None:
    before: dict[str, float] = {}
    if args.baseline:
        before = json.loads(Path(args.baseline).read_text())
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = None if args.db else Path(tmp) / "bench.sqlite3"
        url = args.db or f"sqlite+aiosqlite:///{path}"
        store = await Store.open(url)
        try:
            print(f"filling {args.rows} calls ...", file=sys.stderr)
            seconds = await fill(store, args.rows)
            print(f"filled in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s)", file=sys.stderr)
            if store._engine.dialect.name == "postgresql":
                # The statistics and visibility map autovacuum keeps on a live table.
                async with store._engine.connect() as conn:
                    auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await auto.exec_driver_sql("VACUUM ANALYZE call_history")

            async def bare_count() -> object:
                async with store._engine.connect() as conn:
                    return (
                        await conn.execute(sa.select(sa.func.count()).select_from(call_history))
                    ).scalar()

            reference = await timed(bare_count, args.repeat)
            header = f"{'figure (ms)':<20} {'now':>10} {'x count(*)':>11}"
            print(header + (f" {'before':>10} {'gain':>9}" if before else ""))
            report("count(*) (ref)", reference, before, reference)
            figures["count(*) (ref)"] = reference
            for name, query in queries(args.rows).items():

                async def action(query: HistoryQuery = query) -> object:
                    return await store.query_history(query)

                ms = await timed(action, args.repeat)
                total, _ = await store.query_history(query)
                figures[name] = ms
                report(name, ms, before, reference)
                line = {"bench": "history_query", "rows": args.rows, "query": name}
                print(json.dumps(line | {"ms": round(ms, 2), "matches": total}), file=sys.stderr)
            writes = {"fill rows/s": args.rows / seconds}
            if args.write_calls:
                writes["Store calls/s"] = await write_rate(store, args.write_calls)
                if path is not None:
                    for per_tx in (1, 100):
                        cost = await asyncio.to_thread(
                            sql_write_cost, path, args.write_calls, per_tx, f"s{per_tx}-"
                        )
                        writes[f"SQL us/call {per_tx}/tx"] = cost
            for name, value in writes.items():
                figures[name] = value
                report(name, value, before, None)
                line = {"bench": "history_write", "rows": args.rows, "figure": name}
                print(json.dumps(line | {"value": round(value, 1)}), file=sys.stderr)
        finally:
            await store.close()
    if args.save:
        Path(args.save).write_text(json.dumps(figures, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temporary SQLite)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write-calls", type=int, default=10_000, help="0 skips the write test")
    parser.add_argument("--save", default=None, help="write the figures to this JSON file")
    parser.add_argument("--baseline", default=None, help="a --save file to compare against")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
