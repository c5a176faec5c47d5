"""Indexes for GetCallHistory's State and General filters at millions of rows.

Revision ID: 0004
Revises: 0003
Create Date: 2025-04-01

State: an index on (lower(state), start_time), because the filter is case-insensitive.
General (a case-insensitive substring over five columns) needs a trigram index, which each
backend spells differently; see the comment above HISTORY_SEARCH_COLUMNS in schema.py for
what the SQLite FTS5 table holds and why. Either trigram index may be unavailable (SQLite
older than 3.34 or built without FTS5; PostgreSQL without the right to create pg_trgm):
the migration then logs why and goes on, and the filter scans the table as before.

Written out in full rather than importing `pypbx.store.schema`, like 0001-0003.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Alembic loads this file under a generated module name; log under the package's instead.
logger = logging.getLogger("pypbx.store.migrations")

SEARCH = "call_history_search"
COLUMNS = ("source", "destination", "dialed", "caller_id", "call_id")
PG_INDEX = "call_history_search_trgm"
QUEUE = f"{SEARCH}_queue"
QUEUE_BATCH = 500  # rows queued before they are indexed, in one statement
TRIGGERS = tuple(f"{SEARCH}_{event}" for event in ("insert", "update", "delete", "flush"))


def upgrade() -> None:
    op.create_index(
        "ix_call_history_lower_state",
        "call_history",
        [sa.text("lower(state)"), "start_time"],
        postgresql_include=["state"],  # see schema.py
    )
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _create_fts_table()
    elif dialect == "postgresql":
        _create_trigram_index()


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        for trigger in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute(f"DROP TABLE IF EXISTS {QUEUE}")
        op.execute(f"DROP TABLE IF EXISTS {SEARCH}")
    elif dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
    op.drop_index("ix_call_history_lower_state", "call_history")


def _values(prefix: str) -> str:
    return ", ".join(f"{prefix}{name}" for name in ("id", *COLUMNS))


def _create_fts_table() -> None:
    """FTS5 trigram index of call_history, fed in batches through a queue table.

    FTS5 writes a new segment to disk for every statement that changed it (it flushes on
    each statement savepoint), so a trigger indexing each row as it is written would cost a
    segment per history write, several times the write itself. Instead the triggers only
    queue the row's id, and once QUEUE_BATCH ids are queued one statement indexes them all.
    The query searches the index plus the queue. Changes to rows already indexed (rare:
    history rows keep their numbers) take their old entry out of the index at once.

    detail=none: only which rows hold a trigram, not where; the query ANDs the trigrams
    and the LIKE that follows decides. A quarter of the size of a positional index and as
    fast for this filter. columnsize=0: no per-row token counts (no ranking).
    """
    bind = op.get_bind()
    names = ", ".join(COLUMNS)
    try:
        with bind.begin_nested():
            bind.exec_driver_sql(
                f"CREATE VIRTUAL TABLE {SEARCH} USING fts5({names}, content='call_history',"
                " content_rowid='id', tokenize='trigram', detail=none, columnsize=0)"
            )
    except DBAPIError as exc:
        logger.warning(
            "no call history text index (SQLite %s: %s): the General filter will scan "
            "the whole history (FTS5 with the trigram tokenizer needs SQLite >= 3.34)",
            bind.exec_driver_sql("SELECT sqlite_version()").scalar(),
            exc.orig,
        )
        return
    columns = f"rowid, {names}"
    unindex = (
        f"INSERT INTO {SEARCH}({SEARCH}, {columns}) SELECT 'delete', {_values('old.')}"
        f" WHERE NOT EXISTS (SELECT 1 FROM {QUEUE} WHERE id = old.id)"
    )
    dequeue = f"DELETE FROM {QUEUE} WHERE id = old.id"
    changed = " OR ".join(f"old.{name} IS NOT new.{name}" for name in ("id", *COLUMNS))
    statements = [
        f"CREATE TABLE {QUEUE} (id INTEGER PRIMARY KEY)",
        f"""CREATE TRIGGER {SEARCH}_insert AFTER INSERT ON call_history
            BEGIN INSERT INTO {QUEUE}(id) VALUES (new.id); END""",
        f"""CREATE TRIGGER {SEARCH}_update AFTER UPDATE OF id, {names} ON call_history
            WHEN {changed}
            BEGIN
                {unindex};
                {dequeue};
                INSERT INTO {QUEUE}(id) VALUES (new.id);
            END""",
        f"""CREATE TRIGGER {SEARCH}_delete AFTER DELETE ON call_history
            BEGIN {unindex}; {dequeue}; END""",
        f"""CREATE TRIGGER {SEARCH}_flush AFTER INSERT ON {QUEUE}
            WHEN (SELECT count(*) FROM {QUEUE}) >= {QUEUE_BATCH}
            BEGIN
                INSERT INTO {SEARCH}({columns}) SELECT {_values("")} FROM call_history
                    WHERE id IN (SELECT id FROM {QUEUE});
                DELETE FROM {QUEUE};
            END""",
        f"INSERT INTO {SEARCH}({columns}) SELECT {_values('')} FROM call_history",
    ]
    for statement in statements:
        bind.exec_driver_sql(statement)


def _trigram_schema(bind: Connection) -> str | None:
    """The schema pg_trgm is installed in, or None if it is not installed."""
    query = sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    )
    schema: str | None = bind.execute(query).scalar()
    return schema


def _create_trigram_index() -> None:
    """A GIN trigram index on the searched columns: what the filter's `column ILIKE '%x%'`
    (SQLAlchemy's icontains on PostgreSQL) can use.

    CREATE EXTENSION needs the CREATE right on the database (pg_trgm is a trusted
    extension since PostgreSQL 13); without it the filter works unindexed, as before.
    """
    if context.is_offline_mode():
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        opclass = "gin_trgm_ops"
    else:
        bind = op.get_bind()
        schema = _trigram_schema(bind)
        if schema is None:
            try:
                with bind.begin_nested():
                    bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except DBAPIError as exc:
                logger.warning(
                    "no call history text index: cannot create the pg_trgm extension (%s); "
                    "the General filter will scan the whole history until an administrator "
                    "runs CREATE EXTENSION pg_trgm and CREATE INDEX %s (see migration 0004)",
                    str(exc.orig).strip(),
                    PG_INDEX,
                )
                return
            schema = _trigram_schema(bind)
        opclass = f"{bind.dialect.identifier_preparer.quote(schema or 'public')}.gin_trgm_ops"
    columns = ", ".join(f"{name} {opclass}" for name in COLUMNS)
    op.execute(f"CREATE INDEX {PG_INDEX} ON call_history USING gin ({columns})")
