"""Typed SQLAlchemy ORM models of flowcli's tables.

The tables themselves are defined once, in flowcli.db.tables; these classes map onto
them with ``Mapped`` annotations, for code and tools that want objects. The engine's
hot path and the read commands use the Core tables and never import this module.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped

from flowcli.db.tables import (
    METADATA,
    OWNED_TABLES,
    STEP_LOG_COLUMNS,
    flow_steps_table,
    flow_templates_table,
    include_owned_name,
    messages_table,
    roles_table,
    session_roles_table,
    sessions_table,
    step_logs_table,
)


class Base(DeclarativeBase):
    metadata = METADATA


class Role(Base):
    __table__ = roles_table

    id: Mapped[int]
    name: Mapped[str]
    prompt: Mapped[str]
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]


class FlowTemplate(Base):
    __table__ = flow_templates_table

    id: Mapped[int]
    name: Mapped[str]
    topic: Mapped[str | None]
    type: Mapped[str]
    description: Mapped[str | None]
    version: Mapped[str | None]
    is_active: Mapped[bool | None]
    termination_config: Mapped[str | None]
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    responder: Mapped[str | None]


class FlowStep(Base):
    __table__ = flow_steps_table

    id: Mapped[int]
    flow_template_id: Mapped[int]
    order: Mapped[int]
    speaker_role_ref: Mapped[str]
    target_role_ref: Mapped[str | None]
    task_type: Mapped[str]
    context_scope: Mapped[str]
    context_param: Mapped[str | None]
    logic_config: Mapped[str | None]
    next_step_id: Mapped[int | None]
    description: Mapped[str | None]


class Session(Base):
    __table__ = sessions_table

    id: Mapped[int]
    user_id: Mapped[int | None]
    topic: Mapped[str]
    flow_template_id: Mapped[int]
    flow_snapshot: Mapped[str | None]
    roles_snapshot: Mapped[str | None]
    status: Mapped[str | None]
    current_step_id: Mapped[int | None]
    current_round: Mapped[int | None]
    executed_steps_count: Mapped[int | None]
    error_reason: Mapped[str | None]
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    version: Mapped[int | None]
    lease_owner: Mapped[str | None]
    lease_expires_at: Mapped[datetime | None]
    engine_state: Mapped[str | None]
    variables: Mapped[str | None]
    forked_from_session_id: Mapped[int | None]
    forked_from_log_id: Mapped[int | None]
    log_summary: Mapped[str | None]


class SessionRole(Base):
    __table__ = session_roles_table

    id: Mapped[int]
    session_id: Mapped[int]
    role_ref: Mapped[str]
    role_id: Mapped[int]
    created_at: Mapped[datetime | None]


class Message(Base):
    __table__ = messages_table

    id: Mapped[int]
    session_id: Mapped[int]
    speaker_session_role_id: Mapped[int | None]
    target_session_role_id: Mapped[int | None]
    reply_to_message_id: Mapped[int | None]
    content: Mapped[str]
    content_summary: Mapped[str | None]
    round_index: Mapped[int | None]
    section: Mapped[str | None]
    created_at: Mapped[datetime | None]


class StepExecutionLog(Base):
    """One row per step execution: ``id`` plus exactly the 20 columns of MRC's INSERT."""

    __table__ = step_logs_table

    id: Mapped[int]
    session_id: Mapped[int]
    step_id: Mapped[int]
    parent_log_id: Mapped[int | None]
    execution_order: Mapped[int]
    round_index: Mapped[int | None]
    loop_iteration: Mapped[int | None]
    attempt_count: Mapped[int | None]
    status: Mapped[str | None]
    result_type: Mapped[str | None]
    result_data: Mapped[str | None]
    condition_evaluation: Mapped[bool | None]
    loop_check_result: Mapped[bool | None]
    error_message: Mapped[str | None]
    duration_ms: Mapped[int | None]
    memory_usage_mb: Mapped[float | None]
    created_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    step_snapshot: Mapped[str | None]
    context_snapshot: Mapped[str | None]


__all__ = [
    "OWNED_TABLES",
    "STEP_LOG_COLUMNS",
    "Base",
    "FlowStep",
    "FlowTemplate",
    "Message",
    "Role",
    "Session",
    "SessionRole",
    "StepExecutionLog",
    "flow_steps_table",
    "flow_templates_table",
    "include_owned_name",
    "messages_table",
    "roles_table",
    "session_roles_table",
    "sessions_table",
    "step_logs_table",
]
