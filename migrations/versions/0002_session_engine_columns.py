"""Engine columns on sessions: version, lease, engine state, variables, fork lineage.

Why: MRC had no lock or version, so two requests could run one step twice, and its
loop counters lived nowhere. These nullable columns (additive only, so MRC rows stay
valid) carry the optimistic-concurrency version, the step lease, the loop and retry
state, the session variables and where a forked session came from. The downgrade drops
them in place (no rebuild of the table, which may be MRC's).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NEW_COLUMNS = (
    ("version", sa.Integer()),
    ("lease_owner", sa.String(length=100)),
    ("lease_expires_at", sa.DateTime()),
    ("engine_state", sa.Text()),
    ("variables", sa.Text()),
    ("forked_from_session_id", sa.Integer()),
    ("forked_from_log_id", sa.Integer()),
)


def upgrade() -> None:
    # add_column is a plain ALTER TABLE on SQLite too: no table rebuild, no data copied.
    for name, type_ in NEW_COLUMNS:
        op.add_column("sessions", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    from flowcli.db.migrate import drop_added_columns

    drop_added_columns("sessions", [name for name, _type in reversed(NEW_COLUMNS)])
