"""Batches of session actions: flowcli_batches and flowcli_batch_items.

Why: `session cancel|resume|skip|retry --where …` and `auto --where …` act on many
sessions at once; recording each batch (its selector and action) and each selected
session's outcome lets a batch killed midway resume where it stopped, handling every
session exactly once. Both tables are flowcli's own; nothing of MRC's is altered, and the
items carry no foreign key to MRC's sessions (one would stop MRC deleting its sessions).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flowcli_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("selector", sa.Text(), nullable=False),
        sa.Column("selected_at", sa.DateTime(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_flowcli_batches"),
    )
    op.create_table(
        "flowcli_batch_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("status_before", sa.String(length=20), nullable=True),
        sa.Column("status_after", sa.String(length=20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("mark", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["flowcli_batches.id"],
            name="fk_flowcli_batch_items_batch_id_flowcli_batches",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_flowcli_batch_items"),
    )
    op.create_index(
        "ux_flowcli_batch_items_batch_session",
        "flowcli_batch_items",
        ["batch_id", "session_id"],
        unique=True,
    )
    op.create_index(
        "ix_flowcli_batch_items_batch_position",
        "flowcli_batch_items",
        ["batch_id", "position"],
    )


def downgrade() -> None:
    op.drop_index("ix_flowcli_batch_items_batch_position", table_name="flowcli_batch_items")
    op.drop_index("ux_flowcli_batch_items_batch_session", table_name="flowcli_batch_items")
    op.drop_table("flowcli_batch_items")
    op.drop_table("flowcli_batches")
