"""Text messages for extensions: SIP MESSAGE store-and-forward and SendSms.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Written out in full rather than importing `pypbx.store.schema`, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "messages",
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
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_messages_recipient_state", "messages", ["recipient", "state"])
    op.create_index("ix_messages_state_expires_at", "messages", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_table("messages")
