"""Opening, migrating and reopening the store; SQLite specifics; the Alembic environment."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from pypbx.store import (
    BindingRecord,
    CallHistoryRecord,
    ExtensionRecord,
    HistoryQuery,
    OfficeUserRecord,
    Store,
)
from pypbx.store.engine import make_engine, normalize_url, sqlite_file
from pypbx.store.migrate import alembic_config, head_revision
from pypbx.store.schema import call_history, is_history_search_object, metadata

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TABLES = {"extensions", "office_users", "bindings", "call_history", "settings", "messages"}
# SQLite only: the General filter's FTS5 table, its shadow tables, and its queue.
SQLITE_SEARCH_TABLES = {
    "call_history_search",
    "call_history_search_data",
    "call_history_search_idx",
    "call_history_search_config",
    "call_history_search_queue",
}
SQLITE_SEARCH_TRIGGERS = {
    "call_history_search_insert",
    "call_history_search_update",
    "call_history_search_delete",
    "call_history_search_flush",
}
PG_URL_ENV = "PYPBX_TEST_PG_URL"


async def _versions(url: str) -> list[str]:
    engine = make_engine(normalize_url(url))
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return [row[0] for row in result]
    finally:
        await engine.dispose()


async def _fill(store: Store) -> None:
    await store.add_extension(ExtensionRecord("1000", "SIP", password="pw", settings={"a": 1}))
    await store.add_user(OfficeUserRecord("admin", "$scrypt$h", is_admin=True))
    await store.save_binding(
        BindingRecord("1000", "sip:1000@192.0.2.1", "192.0.2.1:5060", "udp", T0, "cid", 7)
    )
    await store.start_history(
        CallHistoryRecord("c1", T0, None, None, "Internal", "1000", "1001", "1001", "1000", None)
    )
    await store.set_setting("k", [1, 2])


async def test_restart_loses_nothing(db_url: str) -> None:
    first = await Store.open(db_url)
    await _fill(first)
    await first.close()

    second = await Store.open(db_url)  # migrations run again: a no-op at head
    try:
        ext = await second.get_extension("1000")
        assert ext is not None and (ext.password, ext.settings) == ("pw", {"a": 1})
        user = await second.get_user("admin")
        assert user is not None and user.is_admin
        assert [b.cseq for b in await second.list_bindings()] == [7]
        assert (await second.query_history(HistoryQuery()))[0] == 1
        assert await second.get_setting("k") == [1, 2]
        assert await second.call_id_exists("c1")
    finally:
        await second.close()
    assert await _versions(db_url) == [head_revision()]


def _outside_search(name: str | None, type_: str, parent_names: object) -> bool:
    return not is_history_search_object(name)


def _search_objects(conn: Connection) -> set[str]:
    """The General filter's tables, triggers and indexes in this database."""
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE tablename = 'call_history'"
    return {name for (name,) in conn.execute(text(query)) if is_history_search_object(name)}


# SQLite cannot reflect the expression index on lower(state), so Alembic skips comparing it
# (with these warnings); the test checks that index by name instead.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
async def test_schema_matches_migrations(db_url: str) -> None:
    """schema.py and the migration scripts must describe the same tables; the search index
    (not in schema.py: each backend has its own) exists as the migration made it."""
    await (await Store.open(db_url)).close()
    engine = make_engine(normalize_url(db_url))

    def diff(conn: Connection) -> list[object]:
        opts = {"compare_type": True, "include_name": _outside_search}
        context = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            search = await conn.run_sync(_search_objects)
            if conn.dialect.name == "sqlite":
                assert names == TABLES | {"alembic_version"} | SQLITE_SEARCH_TABLES
                assert search == SQLITE_SEARCH_TABLES | SQLITE_SEARCH_TRIGGERS
                found = await conn.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'ix_call_history_lower_state'")
                )
                assert found == (
                    "CREATE INDEX ix_call_history_lower_state"
                    " ON call_history (lower(state), start_time)"
                )
            else:
                assert names == TABLES | {"alembic_version"}
                assert search == {"call_history_search_trgm"}
                trigram = await conn.scalar(
                    text(
                        "SELECT indexdef FROM pg_indexes"
                        " WHERE indexname = 'call_history_search_trgm'"
                    )
                )
                columns = ("source", "destination", "dialed", "caller_id", "call_id")
                ops = ", ".join(f"{name} gin_trgm_ops" for name in columns)
                assert str(trigram).endswith(f" USING gin ({ops})")  # ILIKE can use these
                definition = await conn.scalar(
                    text(
                        "SELECT indexdef FROM pg_indexes"
                        " WHERE indexname = 'ix_call_history_lower_state'"
                    )
                )
                assert str(definition).endswith(
                    " USING btree (lower(state), start_time) INCLUDE (state)"
                )
    finally:
        await engine.dispose()


async def _migrate(url: str, action: str, revision: str) -> None:
    """`alembic upgrade|downgrade <revision>` on `url`, the way the store migrates."""
    path = sqlite_file(normalize_url(url))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(normalize_url(url), migrating=True)

    def run(conn: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def test_upgrade_indexes_the_existing_history(db_url: str) -> None:
    """Migration 0004 on a database that already has calls: they are searchable at once
    (on SQLite straight in the index, nothing left queued)."""
    await _migrate(db_url, "upgrade", "0003")
    engine = make_engine(normalize_url(db_url))
    rows = [
        {
            "call_id": f"old{n}",
            "start_time": (T0 + timedelta(seconds=n)).replace(tzinfo=None),
            "direction": "Internal",
            "source": "1001",
            "destination": f"55{n}4321",
            "dialed": "x",
            "caller_id": "Alice" if n % 2 else "Bob",
            "state": None if n == 3 else "Busy",
            "type": "Audio",
            "ring_duration": 0.0,
            "talk_duration": 0.0,
        }
        for n in range(6)
    ]
    try:
        async with engine.begin() as conn:
            await conn.execute(call_history.insert(), rows)
    finally:
        await engine.dispose()
    async with await Store.open(db_url) as store:
        total, page = await store.query_history(HistoryQuery(general="ALICE"))
        assert (total, [r.call_id for r in page]) == (3, ["old1", "old3", "old5"])
        assert (await store.query_history(HistoryQuery(general="34321")))[0] == 1
        assert (await store.query_history(HistoryQuery(state="BUSY")))[0] == 5
        if store._engine.dialect.name == "sqlite":
            async with store._engine.connect() as conn:
                queued = await conn.scalar(text("SELECT count(*) FROM call_history_search_queue"))
            assert queued == 0


async def test_downgrade_to_0003_removes_the_search_index(db_url: str) -> None:
    await (await Store.open(db_url)).close()
    await _migrate(db_url, "downgrade", "0003")
    engine = make_engine(normalize_url(db_url))
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_search_objects) == set()
            names = await conn.run_sync(
                lambda c: {str(i["name"]) for i in inspect(c).get_indexes("call_history")}
            )
            assert "ix_call_history_lower_state" not in names
    finally:
        await engine.dispose()
    async with await Store.open(db_url) as store:  # and up again
        assert (await store.query_history(HistoryQuery(general="abc")))[0] == 0


async def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    await (await Store.open(db_url)).close()
    engine = make_engine(normalize_url(db_url), migrating=True)

    def downgrade(conn: Connection) -> set[str]:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
        return set(inspect(conn).get_table_names())

    try:
        async with engine.begin() as conn:
            assert await conn.run_sync(downgrade) == {"alembic_version"}
    finally:
        await engine.dispose()
    store = await Store.open(db_url)
    await store.close()
    assert await _versions(db_url) == [head_revision()]


async def test_unsupported_url_refused() -> None:
    with pytest.raises(ValueError, match=r"^unsupported database URL scheme 'mysql'$"):
        await Store.open("mysql://user@localhost/pbx")


async def test_plain_urls_get_async_drivers(tmp_path: Path) -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    async with await Store.open(f"sqlite:///{tmp_path / 'plain.db'}") as store:
        assert await store.count_users() == 0
    assert (tmp_path / "plain.db").is_file()


async def test_in_memory_sqlite(tmp_path: Path) -> None:
    async with await Store.open("sqlite+aiosqlite:///:memory:") as store:
        await _fill(store)
        assert (await store.query_history(HistoryQuery()))[0] == 1


# -- SQLite specifics -------------------------------------------------------------------


async def test_sqlite_file_directory_created_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "pypbx.db"
    async with await Store.open(f"sqlite+aiosqlite:///{path}") as store:
        await _fill(store)
        with closing(sqlite3.connect(path)) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_ddl_is_transactional(tmp_path: Path) -> None:
    """A failed migration must leave nothing half-created behind."""
    engine = make_engine(normalize_url(f"sqlite:///{tmp_path / 't.db'}"))
    try:
        with pytest.raises(RuntimeError, match=r"^boom$"):
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (x INTEGER)"))
                raise RuntimeError("boom")
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert names == []
    finally:
        await engine.dispose()


async def test_sqlite_foreign_keys_on_for_store_off_for_migrations(tmp_path: Path) -> None:
    url = normalize_url(f"sqlite:///{tmp_path / 'fk.db'}")
    for migrating, expected in ((False, 1), (True, 0)):
        engine = make_engine(url, migrating=migrating)
        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text("PRAGMA foreign_keys")) == expected
        finally:
            await engine.dispose()


async def test_concurrent_opens_of_a_new_database(db_url: str) -> None:
    """Two processes (or nodes) starting together: one migrates, the other waits."""
    stores = await asyncio.gather(*(Store.open(db_url) for _ in range(3)))
    for store in stores:
        await store.close()
    assert await _versions(db_url) == [head_revision()]


def _hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    """Another process's writer: takes the write lock, keeps it `seconds`, commits."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO settings (key, value) VALUES ('other', '1')")
        held.set()
        time.sleep(seconds)
        raw.execute("COMMIT")


async def test_sqlite_writer_waits_for_the_write_lock(tmp_path: Path) -> None:
    """A write while another connection writes waits (busy_timeout) instead of failing.

    The case that used to fail at once with "database is locked": a new connection's first
    insert into call_history, whose FTS5 trigger reads the index's tables while the insert
    is prepared; a deferred transaction that has read cannot wait for the write lock.
    """
    path = tmp_path / "busy.db"
    url = f"sqlite+aiosqlite:///{path}"
    held = threading.Event()
    other = threading.Thread(target=_hold_write_lock, args=(path, 0.5, held))
    async with await Store.open(url) as store:  # its connections are all still to be made
        other.start()
        try:
            await asyncio.to_thread(held.wait, 5)
            started = time.monotonic()
            records = [
                CallHistoryRecord(f"c{n}", T0, None, None, "Internal", "1", "2", "2", "1", None)
                for n in range(4)
            ]
            await asyncio.gather(*(store.start_history(record) for record in records))
            assert time.monotonic() - started > 0.2  # it did wait for the other writer
            assert (await store.query_history(HistoryQuery()))[0] == 4
        finally:
            await asyncio.to_thread(other.join)


async def test_sqlite_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Reads begin deferred: under WAL they see the last commit while a writer works."""
    path = tmp_path / "read.db"
    url = f"sqlite+aiosqlite:///{path}"
    held = threading.Event()
    async with await Store.open(url) as store:
        await _fill(store)
        other = threading.Thread(target=_hold_write_lock, args=(path, 2.0, held))
        other.start()
        try:
            await asyncio.to_thread(held.wait, 5)
            started = time.monotonic()
            assert (await store.query_history(HistoryQuery(general="100")))[0] == 1
            assert await store.get_setting("k") == [1, 2]
            assert time.monotonic() - started < 1.5
        finally:
            await asyncio.to_thread(other.join)


async def test_sqlite_empty_transaction_leaves_nothing_pending(tmp_path: Path) -> None:
    """A transaction without statements never reaches SQLite; the next one starts clean."""
    engine = make_engine(normalize_url(f"sqlite:///{tmp_path / 'e.db'}"))
    try:
        async with engine.begin():
            pass
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM t")) == 1
    finally:
        await engine.dispose()


# -- PostgreSQL without the right to create pg_trgm -------------------------------------


@pytest.mark.skipif(not os.environ.get(PG_URL_ENV), reason=f"{PG_URL_ENV} not set")
async def test_postgresql_without_pg_trgm_still_migrates(caplog: pytest.LogCaptureFixture) -> None:
    """A role that may not create extensions: the migration says why there is no General
    index and goes on; the filter works unindexed."""
    admin = normalize_url(os.environ[PG_URL_ENV])
    suffix = uuid.uuid4().hex[:8]
    role, database = f"pypbx_plain_{suffix}", f"pypbx_test_notrgm_{suffix}"
    server = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
            await conn.execute(text(f'CREATE DATABASE "{database}"'))
        owner = create_async_engine(admin.set(database=database), isolation_level="AUTOCOMMIT")
        try:
            async with owner.connect() as conn:  # tables yes, extensions no
                await conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"'))
        finally:
            await owner.dispose()
        url = admin.set(database=database, username=role).render_as_string(hide_password=False)
        with caplog.at_level(logging.WARNING, logger="pypbx.store.migrations"):
            store = await Store.open(url)
        async with store:
            assert "cannot create the pg_trgm extension" in caplog.text
            await _fill(store)
            assert (await store.query_history(HistoryQuery(general="100")))[0] == 1
            async with store._engine.connect() as conn:
                assert await conn.run_sync(_search_objects) == set()
    finally:
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        await server.dispose()


# -- the Alembic environment when run as a developer tool -------------------------------


def test_env_opens_its_own_engine_without_a_connection(tmp_path: Path) -> None:
    """`alembic upgrade head` from the command line: env.py must open an async engine."""
    path = tmp_path / "dev.db"
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", f"sqlite:///{path}")
    command.upgrade(config, "head")
    with closing(sqlite3.connect(path)) as raw:
        tables = {
            row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        version = raw.execute("SELECT version_num FROM alembic_version").fetchall()
    assert tables == TABLES | {"alembic_version"} | SQLITE_SEARCH_TABLES
    assert version == [(head_revision(),)]

    async def reopen() -> None:
        async with await Store.open(f"sqlite:///{path}") as store:
            assert await store.count_users() == 0

    asyncio.run(reopen())


def test_env_offline_mode_renders_sql() -> None:
    buffer = io.StringIO()
    config = alembic_config()
    config.output_buffer = buffer
    config.set_main_option("sqlalchemy.url", "postgresql://u@localhost/pbx")
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE extensions" in sql
    assert "CREATE UNIQUE INDEX ux_call_history_call_id" in sql


def test_env_without_any_url_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYPBX_DB_URL", raising=False)
    with pytest.raises(RuntimeError, match=r"^set sqlalchemy.url or PYPBX_DB_URL"):
        command.upgrade(alembic_config(), "head")
