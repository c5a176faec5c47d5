"""The one place where database engines are made.

SQLite needs per-connection setup that PostgreSQL does not: foreign keys are off by
default, WAL must be asked for (so history queries do not stall registrations), a busy
timeout stops concurrent writers from failing at once, and the driver's own transaction
handling must be replaced by our own BEGIN so that DDL (migrations) is transactional too
(and so that a transaction that writes takes the write lock up front: see
`_configure_sqlite`).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}

_BUSY_TIMEOUT_MS = 10_000

# Statements that need the write lock; a transaction that starts with one begins IMMEDIATE.
_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
# Set (in the connection's info) from SQLAlchemy's "begin" until the first statement.
_BEGIN_PENDING = "pypbx_begin_pending"


def normalize_url(url: str | URL) -> URL:
    """Pick the asyncio driver for a plain `sqlite://` or `postgresql://` URL.

    Raises ValueError for any other backend: only these two are tested.
    """
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
    return parsed.set(drivername=driver)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    database = url.database or ""
    if not is_sqlite(url) or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite database file (for the default store inside the data dir)."""
    return f"sqlite+aiosqlite:///{path.resolve()}"


def make_engine(url: URL, *, migrating: bool = False) -> AsyncEngine:
    """Create an engine; `migrating=True` makes the SQLite engine that runs migrations.

    That engine has foreign keys off, because Alembic's batch mode rebuilds a SQLite table
    by copy-drop-rename and dropping `extensions` would cascade into `bindings`. It also
    takes the write lock when a transaction begins (BEGIN IMMEDIATE), so a second process
    opening the same new file waits for the first one's migration instead of failing
    half-way through its own.
    """
    engine = create_async_engine(url)
    if is_sqlite(url):
        _configure_sqlite(engine, migrating=migrating)
    return engine


def _switch_to_wal(cursor: Any) -> None:
    """Turn on WAL journaling (a no-op once the file is in WAL mode).

    SQLite refuses the switch at once, without honouring busy_timeout, while another
    connection holds the brand-new file; that only happens when several processes open a
    new database together, so a short bounded retry is enough (startup only).
    """
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)


def _roll_back_invalidated(
    dbapi_connection: Any, connection_record: Any, exception: BaseException | None
) -> None:
    """End the transaction of a connection that the pool is about to close (invalidate).

    SQLAlchemy invalidates a connection whose statement was interrupted, as by a task
    cancelled at shutdown, and closes it without a rollback: closing ends the transaction
    anyway, on a server. Not with sqlite3: a connection closed while a cursor still holds a
    statement (executemany's cursor does, and the interrupted one lives on in the
    exception's traceback) lingers as a "zombie" that keeps its transaction, and so the
    write lock, until that cursor is garbage collected; every writer meanwhile waits out
    busy_timeout and fails. The rollback goes to the connection's thread behind the
    interrupted statement and ahead of the close. A cancellation of this wait propagates:
    the rollback is queued by then.
    """
    try:
        dbapi_connection.rollback()
    except Exception as exc:  # the connection is being thrown away: nothing else to do
        logger.debug("rollback of an invalidated connection failed: %s", exc)


def _configure_sqlite(engine: AsyncEngine, *, migrating: bool) -> None:
    """Connection setup, and transactions that begin as their first statement needs.

    A transaction that writes takes the write lock when it begins (BEGIN IMMEDIATE), and
    waits for it under busy_timeout. A deferred transaction instead takes the lock at its
    first write, and if it has read anything before that, SQLite cannot wait: it fails at
    once with "database is locked". Reading first is easy to do unawares: preparing an
    INSERT into call_history has FTS5 read its own tables (the General search index's
    trigger). So SQLAlchemy's begin only marks the transaction as pending, and its first
    statement issues BEGIN IMMEDIATE if it writes, plain BEGIN (readers never wait for a
    writer in WAL mode) if it reads. The migrating engine always begins IMMEDIATE.
    """
    foreign_keys = "OFF" if migrating else "ON"

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Autocommit at the driver level: no implicit BEGIN, so PRAGMAs take effect here
        # and `on_begin` below owns transaction boundaries (making DDL transactional).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA foreign_keys={foreign_keys}")
            cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            _switch_to_wal(cursor)
            # In WAL mode NORMAL cannot corrupt the database; it only skips the fsync per
            # commit (a power cut may lose the last transactions, a crash of pypbx loses
            # nothing). One fsync per call-history write would cap the call rate otherwise.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        if migrating:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.info[_BEGIN_PENDING] = True

    def before_statement(
        conn: Connection, cursor: Any, statement: str, *args: Any, **kwargs: Any
    ) -> None:
        if conn.info.pop(_BEGIN_PENDING, False):
            cursor.execute("BEGIN IMMEDIATE" if _WRITES.match(statement) else "BEGIN")

    def on_end(conn: Connection) -> None:
        # A transaction without statements never began in SQLite: nothing was pending on
        # the driver (its commit and rollback are no-ops outside a transaction).
        # An invalidated connection (a statement was cancelled) has no info to clear, and
        # asking for it would raise PendingRollbackError in place of the cancellation.
        if not conn.invalidated:
            conn.info.pop(_BEGIN_PENDING, None)

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
    event.listen(engine.sync_engine, "before_cursor_execute", before_statement)
    event.listen(engine.sync_engine, "commit", on_end)
    event.listen(engine.sync_engine, "rollback", on_end)
    event.listen(engine.sync_engine, "invalidate", _roll_back_invalidated)
