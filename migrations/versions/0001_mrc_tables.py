"""MRC-compatible tables: roles, flows, sessions, messages and step execution logs.

Why: flowcli must open the databases of the MRC system as they are, so the first
revision creates MRC's seven tables with MRC's names and types, plus the few indexes
flowcli's queries need (not MRC's pile of redundant ones), and cascades from a
session to its children. On a database MRC created (adopted by stamping this
revision), its downgrade removes only flowcli's indexes: the tables are MRC's.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=2000), nullable=True),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.String(length=20), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=True),
        sa.Column("termination_config", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_flow_templates"),
    )
    op.create_table(
        "roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_roles"),
        sa.UniqueConstraint("name", name="uq_roles_name"),
    )
    op.create_table(
        "flow_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow_template_id", sa.Integer(), nullable=False),
        sa.Column("order", sa.Integer(), nullable=False),
        sa.Column("speaker_role_ref", sa.String(length=50), nullable=False),
        sa.Column("target_role_ref", sa.String(length=50), nullable=True),
        sa.Column("task_type", sa.String(length=50), nullable=False),
        sa.Column("context_scope", sa.Text(), nullable=False),
        sa.Column("context_param", sa.Text(), nullable=True),
        sa.Column("logic_config", sa.Text(), nullable=True),
        sa.Column("next_step_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["flow_template_id"],
            ["flow_templates.id"],
            name="fk_flow_steps_flow_template_id_flow_templates",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["next_step_id"],
            ["flow_steps.id"],
            name="fk_flow_steps_next_step_id_flow_steps",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_flow_steps"),
    )
    op.create_index("ix_flow_steps_template_order", "flow_steps", ["flow_template_id", "order"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("topic", sa.String(length=2000), nullable=False),
        sa.Column("flow_template_id", sa.Integer(), nullable=False),
        sa.Column("flow_snapshot", sa.Text(), nullable=True),
        sa.Column("roles_snapshot", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("current_step_id", sa.Integer(), nullable=True),
        sa.Column("current_round", sa.Integer(), nullable=True),
        sa.Column("executed_steps_count", sa.Integer(), nullable=True),
        sa.Column("error_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["flow_template_id"],
            ["flow_templates.id"],
            name="fk_sessions_flow_template_id_flow_templates",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_status", "sessions", ["status"])
    op.create_table(
        "session_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("role_ref", sa.String(length=50), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["role_id"], ["roles.id"], name="fk_session_roles_role_id_roles"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_session_roles_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_session_roles"),
    )
    op.create_index("ix_session_roles_session_ref", "session_roles", ["session_id", "role_ref"])
    op.create_table(
        "step_execution_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("parent_log_id", sa.Integer(), nullable=True),
        sa.Column("execution_order", sa.Integer(), nullable=False),
        sa.Column("round_index", sa.Integer(), nullable=True),
        sa.Column("loop_iteration", sa.Integer(), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("result_type", sa.String(length=50), nullable=True),
        sa.Column("result_data", sa.Text(), nullable=True),
        sa.Column("condition_evaluation", sa.Boolean(), nullable=True),
        sa.Column("loop_check_result", sa.Boolean(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("memory_usage_mb", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("step_snapshot", sa.Text(), nullable=True),
        sa.Column("context_snapshot", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_log_id"],
            ["step_execution_logs.id"],
            name="fk_step_execution_logs_parent_log_id_step_execution_logs",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_step_execution_logs_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["flow_steps.id"], name="fk_step_execution_logs_step_id_flow_steps"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_step_execution_logs"),
    )
    op.create_index(
        "ux_step_logs_session_order",
        "step_execution_logs",
        ["session_id", "execution_order"],
        unique=True,
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("speaker_session_role_id", sa.Integer(), nullable=True),
        sa.Column("target_session_role_id", sa.Integer(), nullable=True),
        sa.Column("reply_to_message_id", sa.Integer(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_summary", sa.String(length=500), nullable=True),
        sa.Column("round_index", sa.Integer(), nullable=True),
        sa.Column("section", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reply_to_message_id"],
            ["messages.id"],
            name="fk_messages_reply_to_message_id_messages",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_messages_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["speaker_session_role_id"],
            ["session_roles.id"],
            name="fk_messages_speaker_session_role_id_session_roles",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_session_role_id"],
            ["session_roles.id"],
            name="fk_messages_target_session_role_id_session_roles",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index("ix_messages_session_id_id", "messages", ["session_id", "id"])


def downgrade() -> None:
    from flowcli.db.owner import OWNER_MRC, infer_owner

    bind = op.get_bind()
    if infer_owner(bind) == OWNER_MRC:
        # MRC created these tables (flowcli adopted them by stamping this revision): going
        # below it removes only the indexes flowcli added, never MRC's tables or rows.
        for table, indexes in FLOWCLI_INDEXES.items():
            present = {ix["name"] for ix in sa.inspect(bind).get_indexes(table)}
            for name in indexes:
                if name in present:
                    op.drop_index(name, table_name=table)
        return
    op.drop_index("ix_messages_session_id_id", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ux_step_logs_session_order", table_name="step_execution_logs")
    op.drop_table("step_execution_logs")
    op.drop_index("ix_session_roles_session_ref", table_name="session_roles")
    op.drop_table("session_roles")
    op.drop_index("ix_sessions_status", table_name="sessions")
    op.drop_table("sessions")
    op.drop_index("ix_flow_steps_template_order", table_name="flow_steps")
    op.drop_table("flow_steps")
    op.drop_table("roles")
    op.drop_table("flow_templates")


# The indexes this revision creates: on a database MRC owns, all that flowcli added here.
FLOWCLI_INDEXES = {
    "messages": ("ix_messages_session_id_id",),
    "step_execution_logs": ("ux_step_logs_session_order",),
    "session_roles": ("ix_session_roles_session_ref",),
    "sessions": ("ix_sessions_status",),
    "flow_steps": ("ix_flow_steps_template_order",),
}
