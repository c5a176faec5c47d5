"""The tables, as SQLAlchemy Core metadata.

This is the schema the code queries; the Alembic migrations are what creates it. A test
compares the two (alembic's `compare_metadata`), so a change here without a migration fails
the build instead of failing at a customer's site.

Strings are unbounded (TEXT / VARCHAR) on purpose: SQLite does not enforce lengths and
PostgreSQL does, and the two backends must accept exactly the same data.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stored as naive UTC (same column type on both backends), returned aware UTC.

    Callers' datetimes are checked for awareness before they reach a statement (see
    `rows.to_db_time`); converting here again keeps any aware zone correct.
    """

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


# A 64-bit key on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-numbered rowid.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

extensions = sa.Table(
    "extensions",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("type", sa.Text(), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("user_id", sa.Text(), nullable=False),
    sa.Column("username", sa.Text(), nullable=False),
    sa.Column("authorization_name", sa.Text(), nullable=False),
    sa.Column("password", sa.Text(), nullable=True),
    sa.Column("ha1_md5", sa.Text(), nullable=True),
    sa.Column("ha1_sha256", sa.Text(), nullable=True),
    sa.Column("settings", sa.JSON(), nullable=False),
    sa.Column("last_ip", sa.Text(), nullable=False),
    sa.Column("user_agent", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_extensions_authorization_name", "authorization_name"),
    sa.Index("ix_extensions_username", "username"),
)

office_users = sa.Table(
    "office_users",
    metadata,
    sa.Column("username", sa.Text(), primary_key=True),
    sa.Column("password_hash", sa.Text(), nullable=False),
    sa.Column("may_use_api", sa.Boolean(), nullable=False),
    sa.Column("is_admin", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# The primary key (extension_id, contact) is also the index for lookups by extension_id.
bindings = sa.Table(
    "bindings",
    metadata,
    sa.Column(
        "extension_id",
        sa.Text(),
        sa.ForeignKey("extensions.id", ondelete="CASCADE", name="fk_bindings_extension_id"),
        primary_key=True,
    ),
    sa.Column("contact", sa.Text(), primary_key=True),
    sa.Column("source", sa.Text(), nullable=False),
    sa.Column("transport", sa.Text(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("call_id", sa.Text(), nullable=False),
    sa.Column("cseq", sa.Integer(), nullable=False),
    sa.Column("user_agent", sa.Text(), nullable=False),
    sa.Column("instance_id", sa.Text(), nullable=False),
    sa.Index("ix_bindings_expires_at", "expires_at"),
)

call_history = sa.Table(
    "call_history",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Text(), nullable=False),
    sa.Column("start_time", UTCDateTime(), nullable=False),
    sa.Column("answer_time", UTCDateTime(), nullable=True),
    sa.Column("end_time", UTCDateTime(), nullable=True),
    sa.Column("direction", sa.Text(), nullable=False),
    sa.Column("source", sa.Text(), nullable=False),
    sa.Column("destination", sa.Text(), nullable=False),
    sa.Column("dialed", sa.Text(), nullable=False),
    sa.Column("caller_id", sa.Text(), nullable=False),
    sa.Column("state", sa.Text(), nullable=True),
    sa.Column("type", sa.Text(), nullable=False),
    sa.Column("ring_duration", sa.Float(), nullable=False),
    sa.Column("talk_duration", sa.Float(), nullable=False),
    sa.Index("ux_call_history_call_id", "call_id", unique=True),
    sa.Index("ix_call_history_start_time", "start_time"),
    sa.Index("ix_call_history_source", "source"),
    sa.Index("ix_call_history_destination", "destination"),
    sa.Index("ix_call_history_state", "state"),
)

# GetCallHistory's State filter compares case-insensitively; this index serves it, already
# in the page's order on SQLite (start_time, then the rowid every index ends with). The
# PostgreSQL planner counts from an expression index without reading the table only when
# the column itself is in the index too, hence INCLUDE (state) there.
sa.Index(
    "ix_call_history_lower_state",
    sa.func.lower(call_history.c.state),
    call_history.c.start_time,
    postgresql_include=["state"],
)

# -- the General filter's substring index (created by migration 0004, not from metadata) --
#
# A case-insensitive substring search over these columns cannot use a b-tree index, so
# each backend gets its own trigram index, with names that start with HISTORY_SEARCH:
# - SQLite: an FTS5 `trigram` table (external content: call_history itself) and a queue of
#   the ids of rows not indexed yet, kept by triggers on call_history. Triggers only queue
#   a written row; a full queue is indexed in one statement (FTS5 writes a segment per
#   statement, which per history row would cost more than the row). Every row is in exactly
#   one of the two, so a search reads the index and the (short) queue. To rebuild the
#   index, empty the queue in the same transaction as FTS5's 'rebuild'. A migration that
#   rebuilds call_history (batch mode) drops the triggers with it and must recreate them.
# - PostgreSQL: a pg_trgm GIN index on the columns (it serves ILIKE, which is what the
#   filter's icontains becomes there), when the extension is available.
# Both only narrow the candidates; the filter still applies its LIKE, so the result is
# the same with or without them.
HISTORY_SEARCH_COLUMNS = ("source", "destination", "dialed", "caller_id", "call_id")
HISTORY_SEARCH = "call_history_search"

# The SQLite tables as a query names them (FTS5's `rowid`; the table name for MATCH).
call_history_search = sa.table(HISTORY_SEARCH, sa.column("rowid"), sa.column(HISTORY_SEARCH))
call_history_search_queue = sa.table(f"{HISTORY_SEARCH}_queue", sa.column("id"))


def is_history_search_object(name: str | None) -> bool:
    """Whether a table, trigger or index belongs to the General search index.

    Such objects exist only on some backends and are not in `metadata`, so schema
    comparisons (the migrations test, autogenerate) must leave them out.
    """
    return name is not None and name.startswith(HISTORY_SEARCH)


settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("value", sa.JSON(), nullable=True),
)

# Text messages for extensions, kept until delivered (and for a while after, for the SmsId).
# No foreign key to extensions: the row of a message must outlive a removed recipient.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("sender", sa.Text(), nullable=False),
    sa.Column("sender_name", sa.Text(), nullable=False),
    sa.Column("recipient", sa.Text(), nullable=False),
    sa.Column("dialed", sa.Text(), nullable=False),
    sa.Column("api_extension", sa.Text(), nullable=False),
    sa.Column("report_url", sa.Text(), nullable=True),
    sa.Column("content_type", sa.Text(), nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=False),
    sa.Column("state", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    # The SMSC's message id of a message sent out over SMPP (its receipts name only that).
    sa.Column("remote_id", sa.Text(), nullable=True),
    sa.Index("ix_messages_recipient_state", "recipient", "state"),
    sa.Index("ix_messages_state_expires_at", "state", "expires_at"),
    sa.Index("ix_messages_remote_id", "remote_id"),
)
