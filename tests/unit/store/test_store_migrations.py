"""Opening, migrating and reopening the store; SQLite specifics; the Alembic environment."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from pypbx.store import (
    BindingRecord,
    CallHistoryRecord,
    ExtensionRecord,
    HistoryQuery,
    OfficeUserRecord,
    Store,
)
from pypbx.store.engine import make_engine, normalize_url
from pypbx.store.migrate import alembic_config, head_revision
from pypbx.store.schema import metadata

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TABLES = {"extensions", "office_users", "bindings", "call_history", "settings", "messages"}


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


async def test_schema_matches_migrations(db_url: str) -> None:
    """schema.py and the migration scripts must describe the same tables."""
    await (await Store.open(db_url)).close()
    engine = make_engine(normalize_url(db_url))

    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert names == TABLES | {"alembic_version"}
    finally:
        await engine.dispose()


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
    assert tables == TABLES | {"alembic_version"}
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
