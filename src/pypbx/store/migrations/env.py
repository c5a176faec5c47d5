"""Alembic environment for the pypbx store.

At run time `pypbx.store.migrate` passes an already-open connection (inside a
transaction) through `config.attributes["connection"]`. For developers running the
`alembic` command (e.g. `alembic -c src/pypbx/store/alembic.ini revision --autogenerate`)
there is no connection: one is opened on an async engine from `sqlalchemy.url` or the
PYPBX_DB_URL environment variable.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from pypbx.store.engine import make_engine, normalize_url
from pypbx.store.schema import is_history_search_object, metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # the General search index exists only where the backend supports it and is not in
        # `metadata`: autogenerate must not propose dropping it
        include_name=lambda name, _type, _parents: not is_history_search_object(name),
    )


def _run_on(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("PYPBX_DB_URL")
    if not url:
        raise RuntimeError("set sqlalchemy.url or PYPBX_DB_URL to run migrations")
    return url


async def _run_with_own_engine() -> None:
    url = normalize_url(_database_url())
    engine = make_engine(url, migrating=True)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_on)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=normalize_url(_database_url()),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        _run_offline()
        return
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_with_own_engine())
    else:
        _run_on(connection)


_main()
