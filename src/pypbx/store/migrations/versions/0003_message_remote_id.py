"""The SMSC's message id of messages sent out over SMPP, to match delivery receipts.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01

Written out in full rather than importing `pypbx.store.schema`, like 0001 and 0002.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite drops a column only by copying the table; harmless elsewhere.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("remote_id", sa.Text(), nullable=True))
        batch.create_index("ix_messages_remote_id", ["remote_id"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_remote_id")
        batch.drop_column("remote_id")
