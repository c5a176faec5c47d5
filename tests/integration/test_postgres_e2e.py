"""pypbx on PostgreSQL, end to end: configure, register and call, then read the rows back.

The store's unit tests prove the SQL on both backends; this proves the shipped process
uses PostgreSQL when given `--db`: extensions added over the HTTP API, the registration
binding and the call's history row must all be in the database the URL names, read here
with a separate client rather than through pypbx. The database is a fresh one on the test
server ($PYPBX_TEST_PG_URL, which `make test` always sets), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from peers.pbx import PbxProcess

PG_URL_ENV = "PYPBX_TEST_PG_URL"

pytestmark = pytest.mark.skipif(
    not os.environ.get(PG_URL_ENV), reason=f"{PG_URL_ENV} not set (make test sets it)"
)

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")


def _dsn(database: str | None = None) -> str:
    """A plain libpq-style URL for asyncpg, from the SQLAlchemy URL in the environment."""
    url = make_url(os.environ[PG_URL_ENV]).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _run_sql(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def pg_database() -> Iterator[str]:
    """Name of a new empty database, dropped (connections and all) after the test."""
    name = f"pypbx_e2e_{uuid.uuid4().hex[:12]}"
    _run_sql(_dsn(), f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _run_sql(_dsn(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pbx(pg_database: str, start_pbx) -> PbxProcess:
    """pypbx storing everything in `pg_database` (requested first, so it is dropped last)."""
    pbx = start_pbx(db_url=_dsn(pg_database))
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    return pbx


def _wait_for_rows(dsn: str, sql: str, count: int, timeout: float = 10.0) -> list[asyncpg.Record]:
    """Poll until `sql` returns `count` rows: history is written just after the call ends."""
    deadline = time.monotonic() + timeout
    rows = _run_sql(dsn, sql)
    while len(rows) != count and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = _run_sql(dsn, sql)
    return rows


def test_register_and_call_are_stored_in_postgresql(pbx, pg_database, sipp):
    # the callee registers, then answers on the same port
    reg = sipp("register", remote=pbx.sip_address, service=CALLEE[0], auth=CALLEE)
    result = reg.run()
    assert result.ok, result.describe()
    uas = sipp("uas_answer", local_port=reg.local_port, rtp_echo=True, timeout=40)
    uas.start().wait_until_listening()
    uac = sipp(
        "uac_call",
        remote=pbx.sip_address,
        service=CALLEE[0],
        auth=CALLER,
        keys={"caller": CALLER[0]},
        pause_ms=1000,
        timeout=40,
    ).start()
    for run in (uac, uas):
        outcome = run.wait()
        assert outcome.ok, outcome.describe()
    pbx.wait_for_calls(lambda calls: calls == [], timeout=10)

    dsn = _dsn(pg_database)
    extensions = _run_sql(dsn, "SELECT id, type, enabled, username FROM extensions ORDER BY id")
    assert [tuple(row) for row in extensions] == [
        ("1000", "SIP", True, "1000"),
        ("2000", "SIP", True, "2000"),
    ]

    bindings = _run_sql(dsn, "SELECT extension_id, contact, transport FROM bindings")
    assert len(bindings) == 1, bindings
    (binding,) = bindings
    assert binding["extension_id"] == CALLEE[0]
    assert binding["contact"].startswith(f"sip:{CALLEE[0]}@127.0.0.1:{reg.local_port}")
    assert binding["transport"].lower() == "udp"

    history = _wait_for_rows(
        dsn,
        "SELECT source, destination, dialed, state, answer_time, end_time, talk_duration"
        " FROM call_history WHERE end_time IS NOT NULL",
        count=1,
    )
    all_rows = _run_sql(dsn, "SELECT call_id, state FROM call_history")
    assert len(all_rows) == 1, all_rows
    assert len(history) == 1, history
    (row,) = history
    assert (row["source"], row["destination"], row["dialed"]) == ("1000", "2000", "2000")
    assert row["state"] == "CallerHungUp"
    assert row["answer_time"] is not None
    assert row["answer_time"] <= row["end_time"]
    assert row["talk_duration"] > 0
