"""Initial schema: extensions, office users, bindings, call history, settings.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full rather than importing `pypbx.store.schema`: a migration must keep
creating the schema of its own time even after schema.py has moved on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "extensions",
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
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_extensions_authorization_name", "extensions", ["authorization_name"])
    op.create_index("ix_extensions_username", "extensions", ["username"])

    op.create_table(
        "office_users",
        sa.Column("username", sa.Text(), primary_key=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("may_use_api", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )

    op.create_table(
        "bindings",
        sa.Column("extension_id", sa.Text(), primary_key=True),
        sa.Column("contact", sa.Text(), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("transport", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["extension_id"],
            ["extensions.id"],
            name="fk_bindings_extension_id",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_bindings_expires_at", "bindings", ["expires_at"])

    op.create_table(
        "call_history",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("answer_time", sa.DateTime(), nullable=True),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("dialed", sa.Text(), nullable=False),
        sa.Column("caller_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("ring_duration", sa.Float(), nullable=False),
        sa.Column("talk_duration", sa.Float(), nullable=False),
    )
    op.create_index("ux_call_history_call_id", "call_history", ["call_id"], unique=True)
    op.create_index("ix_call_history_start_time", "call_history", ["start_time"])
    op.create_index("ix_call_history_source", "call_history", ["source"])
    op.create_index("ix_call_history_destination", "call_history", ["destination"])
    op.create_index("ix_call_history_state", "call_history", ["state"])

    op.create_table(
        "settings",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_table("call_history")
    op.drop_table("bindings")
    op.drop_table("office_users")
    op.drop_table("extensions")
