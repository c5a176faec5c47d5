"""Bring a database to the newest schema, from inside the running program.

The Alembic configuration is built in code and points at the migration scripts shipped
inside the package, so an installed pypbx needs no alembic.ini and no working directory:
opening the store is enough to create or upgrade the schema.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary constant: PostgreSQL nodes sharing one database take this advisory lock so
# that two of them starting together do not run the same migration twice.
_PG_MIGRATION_LOCK = 0x7079_7062_7800


def alembic_config() -> Config:
    """An Alembic config for the shipped scripts (also used by tests)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision the shipped scripts define."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migration scripts found in " + str(MIGRATIONS_DIR))
    return head


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    config = alembic_config()
    # env.py runs the migrations on this connection instead of opening its own.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Run all pending migrations in one transaction (both backends have transactional DDL)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    logger.debug("database schema is at revision %s", head_revision())
