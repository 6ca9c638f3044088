"""flowcli_meta: who owns the database; no unique execution_order on a database MRC owns.

Why: flowcli shares MRC's database with MRC itself, and must then follow MRC's
conventions and add nothing MRC's code can violate. Each command needs to know the
owner cheaply, so it is recorded here (key ``owner``: flowcli for a database whose
shared tables flowcli created, mrc for one it adopted). MRC numbers its step log rows
itself and two concurrent MRC requests can number alike, so on MRC's databases the
unique index on (session_id, execution_order), which earlier adoptions created, is
removed: flowcli's exactly-once rests on the version-checked session update instead.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UNIQUE_ORDER_INDEX = "ux_step_logs_session_order"


def upgrade() -> None:
    from flowcli.db.owner import OWNER_MRC, infer_owner, write_meta

    bind = op.get_bind()
    owner = infer_owner(bind)
    op.create_table(
        "flowcli_meta",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_flowcli_meta"),
    )
    recorded = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "seconds")
    write_meta(bind, {"owner": owner, "owner_recorded_at": recorded})
    if owner == OWNER_MRC:
        indexes = {ix["name"] for ix in sa.inspect(bind).get_indexes("step_execution_logs")}
        if UNIQUE_ORDER_INDEX in indexes:
            op.drop_index(UNIQUE_ORDER_INDEX, table_name="step_execution_logs")


def downgrade() -> None:
    # The unique index is not put back on MRC's database: MRC's own code could violate it.
    op.drop_table("flowcli_meta")
