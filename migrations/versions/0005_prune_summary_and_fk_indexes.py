"""A per-step log summary on sessions, and the indexes that make deleting sessions cheap.

Why: `flowcli db prune --logs-only` drops a session's step logs but keeps what
`logs stats` reports (counts, failures, durations) in ``sessions.log_summary`` (JSON in
Text), nullable and default-free so MRC's rows and code stay valid. And every deleted
log row, message or session role makes the database look for rows still pointing at it
(the foreign keys' check); without an index on the pointing column each look-up scans
the whole table, so deleting one session of a million-row log took seconds per
hundred rows. The indexes are partial (only rows that point), so the step that writes
a row with no parent or reply pays nothing for them; they are indexes, not
constraints, so nothing MRC writes can violate them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (index, table, column): each partial on ``column IS NOT NULL``.
POINTER_INDEXES = (
    ("ix_step_execution_logs_parent_log_id", "step_execution_logs", "parent_log_id"),
    ("ix_messages_speaker_session_role_id", "messages", "speaker_session_role_id"),
    ("ix_messages_target_session_role_id", "messages", "target_session_role_id"),
    ("ix_messages_reply_to_message_id", "messages", "reply_to_message_id"),
)


def upgrade() -> None:
    op.add_column("sessions", sa.Column("log_summary", sa.Text(), nullable=True))
    for name, table, column in POINTER_INDEXES:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name, table, [column], sqlite_where=where, postgresql_where=where, if_not_exists=True
        )


def downgrade() -> None:
    for name, table, _column in reversed(POINTER_INDEXES):
        op.drop_index(name, table_name=table, if_exists=True)
    from flowcli.db.migrate import drop_added_columns

    # In place: on an adopted database `sessions` is MRC's table, never rebuilt.
    drop_added_columns("sessions", ["log_summary"])
