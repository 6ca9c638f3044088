"""SQLAlchemy models: the one owner of flowcli's schema.

Table and column names and types are MRC's (see docs/schema.md) so that flowcli opens
an MRC database as it is. What flowcli needs beyond MRC is additive only: nullable
columns on ``sessions`` (lease, version, engine state, lineage). JSON lives in Text.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints keep Alembic's batch mode (table rebuilds on SQLite) predictable.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)


class FlowTemplate(Base):
    __tablename__ = "flow_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    topic: Mapped[str | None] = mapped_column(String(2000))
    type: Mapped[str] = mapped_column(String(50), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String(20))
    is_active: Mapped[bool | None] = mapped_column(Boolean)
    termination_config: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    # flowcli addition (revision 0003): the flow's default responder, JSON.
    responder: Mapped[str | None] = mapped_column(Text)


class FlowStep(Base):
    __tablename__ = "flow_steps"
    __table_args__ = (Index("ix_flow_steps_template_order", "flow_template_id", "order"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_template_id: Mapped[int] = mapped_column(
        ForeignKey("flow_templates.id", ondelete="CASCADE"), nullable=False
    )
    order: Mapped[int] = mapped_column("order", Integer, nullable=False)
    speaker_role_ref: Mapped[str] = mapped_column(String(50), nullable=False)
    target_role_ref: Mapped[str | None] = mapped_column(String(50))
    task_type: Mapped[str] = mapped_column(String(50), nullable=False)
    context_scope: Mapped[str] = mapped_column(Text, nullable=False)
    context_param: Mapped[str | None] = mapped_column(Text)
    logic_config: Mapped[str | None] = mapped_column(Text)
    next_step_id: Mapped[int | None] = mapped_column(
        ForeignKey("flow_steps.id", ondelete="SET NULL")
    )
    description: Mapped[str | None] = mapped_column(String(500))


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    topic: Mapped[str] = mapped_column(String(2000), nullable=False)
    flow_template_id: Mapped[int] = mapped_column(ForeignKey("flow_templates.id"), nullable=False)
    flow_snapshot: Mapped[str | None] = mapped_column(Text)
    roles_snapshot: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(20))
    current_step_id: Mapped[int | None] = mapped_column(Integer)
    current_round: Mapped[int | None] = mapped_column(Integer)
    executed_steps_count: Mapped[int | None] = mapped_column(Integer)
    error_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)

    # flowcli additions (revision 0002), all nullable so MRC rows stay valid.
    # version: optimistic-concurrency counter bumped by every engine write.
    version: Mapped[int | None] = mapped_column(Integer)
    # lease_*: who is running a step right now, and until when the claim is valid.
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    # engine_state: JSON of loop counters and retry attempts (see docs/engine.md).
    engine_state: Mapped[str | None] = mapped_column(Text)
    # variables: JSON object of session variables (`--var`), visible as `vars`.
    variables: Mapped[str | None] = mapped_column(Text)
    # lineage of `session fork`.
    forked_from_session_id: Mapped[int | None] = mapped_column(Integer)
    forked_from_log_id: Mapped[int | None] = mapped_column(Integer)


class SessionRole(Base):
    __tablename__ = "session_roles"
    __table_args__ = (Index("ix_session_roles_session_ref", "session_id", "role_ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    )
    role_ref: Mapped[str] = mapped_column(String(50), nullable=False)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"), nullable=False)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_session_id_id", "session_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    )
    speaker_session_role_id: Mapped[int | None] = mapped_column(
        ForeignKey("session_roles.id", ondelete="CASCADE")
    )
    target_session_role_id: Mapped[int | None] = mapped_column(
        ForeignKey("session_roles.id", ondelete="SET NULL")
    )
    reply_to_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    content: Mapped[str] = mapped_column(Text, nullable=False)
    content_summary: Mapped[str | None] = mapped_column(String(500))
    round_index: Mapped[int | None] = mapped_column(Integer)
    section: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime | None] = mapped_column(DateTime)


class StepExecutionLog(Base):
    """One row per step execution: ``id`` plus exactly the 20 columns of MRC's INSERT."""

    __tablename__ = "step_execution_logs"
    __table_args__ = (
        Index("ux_step_logs_session_order", "session_id", "execution_order", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    )
    step_id: Mapped[int] = mapped_column(ForeignKey("flow_steps.id"), nullable=False)
    parent_log_id: Mapped[int | None] = mapped_column(
        ForeignKey("step_execution_logs.id", ondelete="SET NULL")
    )
    execution_order: Mapped[int] = mapped_column(Integer, nullable=False)
    round_index: Mapped[int | None] = mapped_column(Integer, default=1)
    loop_iteration: Mapped[int | None] = mapped_column(Integer, default=0)
    attempt_count: Mapped[int | None] = mapped_column(Integer, default=1)
    status: Mapped[str | None] = mapped_column(String(20))
    result_type: Mapped[str | None] = mapped_column(String(50))
    result_data: Mapped[str | None] = mapped_column(Text)
    condition_evaluation: Mapped[bool | None] = mapped_column(Boolean)
    loop_check_result: Mapped[bool | None] = mapped_column(Boolean)
    error_message: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    memory_usage_mb: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    step_snapshot: Mapped[str | None] = mapped_column(Text)
    context_snapshot: Mapped[str | None] = mapped_column(Text)


# The columns of the bug report's INSERT, in its order; tests hold the model to it.
STEP_LOG_COLUMNS: tuple[str, ...] = (
    "session_id",
    "step_id",
    "parent_log_id",
    "execution_order",
    "round_index",
    "loop_iteration",
    "attempt_count",
    "status",
    "result_type",
    "result_data",
    "condition_evaluation",
    "loop_check_result",
    "error_message",
    "duration_ms",
    "memory_usage_mb",
    "created_at",
    "started_at",
    "completed_at",
    "step_snapshot",
    "context_snapshot",
)


def include_owned_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: compare and migrate only flowcli's own tables."""
    return type_ != "table" or name in Base.metadata.tables


# Tables flowcli owns (creates, repairs). Anything else in a database is left alone.
OWNED_TABLES: tuple[str, ...] = tuple(Base.metadata.tables)

# Core handles on the tables, typed as Table, for the hot paths that bypass the ORM.
roles_table = Base.metadata.tables["roles"]
flow_templates_table = Base.metadata.tables["flow_templates"]
flow_steps_table = Base.metadata.tables["flow_steps"]
sessions_table = Base.metadata.tables["sessions"]
session_roles_table = Base.metadata.tables["session_roles"]
messages_table = Base.metadata.tables["messages"]
step_logs_table = Base.metadata.tables["step_execution_logs"]
