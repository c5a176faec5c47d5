"""Store fixtures: every test runs on SQLite and, when PYPBX_TEST_PG_URL is set (e.g.
postgresql+asyncpg://postgres@127.0.0.1:55432/postgres; `make test` always sets it), on
PostgreSQL as well.

Creating and migrating a database is the slow part (a PostgreSQL database costs about a
third of a second), so tests that only use a `store` skip it: on PostgreSQL they share one
migrated database per pytest process (one per xdist worker) that is emptied, id sequences
included, before each test; on SQLite each gets a copy of a file migrated once. Tests about
opening and migrating take `db_url` instead: a brand-new, empty database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pypbx.store import Store
from pypbx.store.engine import normalize_url
from pypbx.store.schema import metadata

PG_URL_ENV = "PYPBX_TEST_PG_URL"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(not os.environ.get(PG_URL_ENV), reason=f"{PG_URL_ENV} not set"),
    ),
]

# One simple-protocol round trip that empties every table and restarts every id sequence.
# DELETE, not TRUNCATE: on a handful of tiny tables it is about three times faster.
_EMPTY_TABLES = " ".join(
    f'DELETE FROM "{table.name}";' for table in reversed(metadata.sorted_tables)
)
_RESTART_SEQUENCES = """
DO $$
DECLARE seq record;
BEGIN
    FOR seq IN SELECT schemaname, sequencename FROM pg_sequences LOOP
        EXECUTE format('ALTER SEQUENCE %I.%I RESTART', seq.schemaname, seq.sequencename);
    END LOOP;
END $$;
"""


def _admin_url() -> URL:
    return normalize_url(os.environ[PG_URL_ENV])


def _new_db_name(purpose: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"pypbx_test_{purpose}_{worker}_{uuid.uuid4().hex[:8]}"


def _url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


async def _create_database(name: str) -> str:
    admin = _admin_url()
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return _url_string(admin.set(database=name))


async def _drop_database(name: str) -> None:
    engine = create_async_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test ("sqlite" or "postgresql"), shared by `db_url` and `store`."""
    return str(request.param)


@pytest.fixture(scope="session")
def shared_pg_url() -> Iterator[str]:
    """One migrated PostgreSQL database for this process, dropped at the end of the session.

    Sync, with its own short-lived event loops: asyncpg connections belong to the loop
    that made them, and every test runs in a loop of its own.
    """
    name = _new_db_name("shared")
    url = asyncio.run(_create_database(name))

    async def migrate() -> None:
        await (await Store.open(url)).close()

    try:
        asyncio.run(migrate())
        yield url
    finally:
        asyncio.run(_drop_database(name))


@pytest.fixture
async def db_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a brand-new, empty (unmigrated) database on each backend under test."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'pypbx.db'}"
        return
    name = _new_db_name("fresh")
    url = await _create_database(name)
    try:
        yield url
    finally:
        await _drop_database(name)


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, migrated once and copied for every test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "pypbx.db"

    async def migrate() -> None:
        await (await Store.open(f"sqlite+aiosqlite:///{path}")).close()

    asyncio.run(migrate())
    return path


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where `store` opens: a private copy of the migrated SQLite file, or the shared
    PostgreSQL database.

    Sync on purpose: the session fixtures it pulls in run their own event loops.
    """
    if backend == "sqlite":
        template: Path = request.getfixturevalue("migrated_sqlite_file")
        path = tmp_path / "data" / "pypbx.db"
        path.parent.mkdir()
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"
    return str(request.getfixturevalue("shared_pg_url"))


@pytest.fixture
async def store(backend: str, store_url: str) -> AsyncIterator[Store]:
    """An open store with an empty, fully migrated schema."""
    if backend == "postgresql":
        dsn = make_url(store_url).set(drivername="postgresql")
        conn = await asyncpg.connect(_url_string(dsn))
        try:
            await conn.execute(_EMPTY_TABLES + _RESTART_SEQUENCES)
        finally:
            await conn.close()
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()
