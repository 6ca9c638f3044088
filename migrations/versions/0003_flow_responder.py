"""A flow's default responder: flow_templates.responder (JSON in Text).

Why: a flow file may name the responder that writes its messages (a template, or an
OpenAI-compatible model). MRC's flow_templates has no column for it, so flowcli adds
one, nullable, leaving MRC rows valid.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flow_templates", sa.Column("responder", sa.Text(), nullable=True))


def downgrade() -> None:
    from flowcli.db.migrate import drop_added_columns

    drop_added_columns("flow_templates", ["responder"])
