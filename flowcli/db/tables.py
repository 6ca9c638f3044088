"""flowcli's schema as SQLAlchemy Core tables: the one definition everything maps to.

Table and column names and types are MRC's (docs/schema.md) so that flowcli opens an
MRC database as it is; what flowcli adds is additive only (nullable columns). Every
query uses these tables directly (no ORM, which keeps its import time off every
command); Alembic compares its migrations with METADATA, and a test holds them equal.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# Defined without SQLAlchemy for the light paths; re-exported here beside the models.
from flowcli.db.plain_schema import SHARED_TABLES, STEP_LOG_COLUMNS  # noqa: F401

# Named constraints keep Alembic's batch mode (table rebuilds on SQLite) predictable.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

METADATA = MetaData(naming_convention=NAMING_CONVENTION)

UNIQUE_ORDER_INDEX = "ux_step_logs_session_order"

roles_table = Table(
    "roles",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("prompt", Text, nullable=False),
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
)

flow_templates_table = Table(
    "flow_templates",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("topic", String(2000)),
    Column("type", String(50), nullable=False),
    Column("description", Text),
    Column("version", String(20)),
    Column("is_active", Boolean),
    Column("termination_config", Text),
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
    # flowcli addition (revision 0003): the flow's default responder, JSON.
    Column("responder", Text),
)

flow_steps_table = Table(
    "flow_steps",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column(
        "flow_template_id",
        Integer,
        ForeignKey("flow_templates.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("order", Integer, nullable=False),
    Column("speaker_role_ref", String(50), nullable=False),
    Column("target_role_ref", String(50)),
    Column("task_type", String(50), nullable=False),
    Column("context_scope", Text, nullable=False),
    Column("context_param", Text),
    Column("logic_config", Text),
    Column("next_step_id", Integer, ForeignKey("flow_steps.id", ondelete="SET NULL")),
    Column("description", String(500)),
    Index("ix_flow_steps_template_order", "flow_template_id", "order"),
)

sessions_table = Table(
    "sessions",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer),
    Column("topic", String(2000), nullable=False),
    Column("flow_template_id", Integer, ForeignKey("flow_templates.id"), nullable=False),
    Column("flow_snapshot", Text),
    Column("roles_snapshot", Text),
    Column("status", String(20)),
    Column("current_step_id", Integer),
    Column("current_round", Integer),
    Column("executed_steps_count", Integer),
    Column("error_reason", String(500)),
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
    Column("ended_at", DateTime),
    # flowcli additions (revision 0002), all nullable so MRC rows stay valid.
    # version: optimistic-concurrency counter bumped by every engine write.
    Column("version", Integer),
    # lease_*: who is running a step right now, and until when the claim is valid.
    Column("lease_owner", String(100)),
    Column("lease_expires_at", DateTime),
    # engine_state: JSON of loop counters and retry attempts (see docs/engine.md).
    Column("engine_state", Text),
    # variables: JSON object of session variables (`--var`), visible as `vars`.
    Column("variables", Text),
    # lineage of `session fork`.
    Column("forked_from_session_id", Integer),
    Column("forked_from_log_id", Integer),
    # log_summary (revision 0005): JSON per-step counts and durations written by
    # `db prune --logs-only` before it drops the step logs, so `logs stats` still answers.
    Column("log_summary", Text),
    Index("ix_sessions_status", "status"),
)

session_roles_table = Table(
    "session_roles",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("role_ref", String(50), nullable=False),
    Column("role_id", Integer, ForeignKey("roles.id"), nullable=False),
    Column("created_at", DateTime),
    Index("ix_session_roles_session_ref", "session_id", "role_ref"),
)

messages_table = Table(
    "messages",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("speaker_session_role_id", Integer, ForeignKey("session_roles.id", ondelete="CASCADE")),
    Column("target_session_role_id", Integer, ForeignKey("session_roles.id", ondelete="SET NULL")),
    Column("reply_to_message_id", Integer, ForeignKey("messages.id", ondelete="SET NULL")),
    Column("content", Text, nullable=False),
    Column("content_summary", String(500)),
    Column("round_index", Integer),
    Column("section", String(100)),
    Column("created_at", DateTime),
    Index("ix_messages_session_id_id", "session_id", "id"),
    # Revision 0005: deleting a session role or a message makes the database look for
    # rows that still point at it (a foreign key check per deleted row); without these
    # indexes each look-up scans the whole table. Partial: only rows that do point.
    Index(
        "ix_messages_speaker_session_role_id",
        "speaker_session_role_id",
        sqlite_where=text("speaker_session_role_id IS NOT NULL"),
        postgresql_where=text("speaker_session_role_id IS NOT NULL"),
    ),
    Index(
        "ix_messages_target_session_role_id",
        "target_session_role_id",
        sqlite_where=text("target_session_role_id IS NOT NULL"),
        postgresql_where=text("target_session_role_id IS NOT NULL"),
    ),
    Index(
        "ix_messages_reply_to_message_id",
        "reply_to_message_id",
        sqlite_where=text("reply_to_message_id IS NOT NULL"),
        postgresql_where=text("reply_to_message_id IS NOT NULL"),
    ),
)

# One row per step execution: ``id`` plus exactly the 20 columns of MRC's INSERT.
step_logs_table = Table(
    "step_execution_logs",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("step_id", Integer, ForeignKey("flow_steps.id"), nullable=False),
    Column("parent_log_id", Integer, ForeignKey("step_execution_logs.id", ondelete="SET NULL")),
    Column("execution_order", Integer, nullable=False),
    Column("round_index", Integer, default=1),
    Column("loop_iteration", Integer, default=0),
    Column("attempt_count", Integer, default=1),
    Column("status", String(20)),
    Column("result_type", String(50)),
    Column("result_data", Text),
    Column("condition_evaluation", Boolean),
    Column("loop_check_result", Boolean),
    Column("error_message", Text),
    Column("duration_ms", Integer),
    Column("memory_usage_mb", Float),
    Column("created_at", DateTime),
    Column("started_at", DateTime),
    Column("completed_at", DateTime),
    Column("step_snapshot", Text),
    Column("context_snapshot", Text),
    # Unique on flowcli's own databases only: on a database MRC owns, MRC's code can
    # number two rows alike, so flowcli must not add a constraint it can violate
    # (docs/mrc.md); MRC's own non-unique idx_step_logs_session_execution_order serves.
    Index(UNIQUE_ORDER_INDEX, "session_id", "execution_order", unique=True),
    # Revision 0005: the foreign key look-up of a deleted log's repeats (see messages).
    Index(
        "ix_step_execution_logs_parent_log_id",
        "parent_log_id",
        sqlite_where=text("parent_log_id IS NOT NULL"),
        postgresql_where=text("parent_log_id IS NOT NULL"),
    ),
)

# flowcli's own ledger (revision 0004), key/value: who owns the database (``owner``:
# flowcli or mrc), and for an adopted database when it was adopted and what flowcli added.
# flowcli.db.owner reads and writes it.
flowcli_meta_table = Table(
    "flowcli_meta",
    METADATA,
    Column("key", String(100), primary_key=True),
    Column("value", Text),
)

# --- flowcli's own tables (revision 0006): batches of session actions ------------------
# A batch is one `--where` action (cancel, resume, skip, retry, auto) over the sessions it
# selected when it started; each selected session is an item with its outcome, so a batch
# killed midway resumes where it stopped (flowcli.engine.batch). Items name their session
# by id without a foreign key: on a database MRC shares, a constraint from flowcli's table
# to MRC's sessions would stop MRC deleting its own sessions.
batches_table = Table(
    "flowcli_batches",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("action", String(20), nullable=False),
    # the --where expression as typed, and the moment its ago() counted from
    Column("selector", Text, nullable=False),
    Column("selected_at", DateTime, nullable=False),
    # JSON: the action's options (reason, limit, concurrency, responder; never an API key)
    Column("arguments", Text),
    Column("status", String(20), nullable=False),  # running, done, interrupted
    Column("total", Integer, nullable=False),
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
    Column("ended_at", DateTime),
    # the process running it (host:pid:random) and until when that claim holds
    Column("owner", String(100)),
    Column("lease_expires_at", DateTime),
)

batch_items_table = Table(
    "flowcli_batch_items",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column(
        "batch_id",
        Integer,
        ForeignKey("flowcli_batches.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("session_id", Integer, nullable=False),
    # pending, started, done, refused, unmatched, busy (flowcli.engine.batch.OUTCOMES)
    Column("outcome", String(20), nullable=False),
    Column("status_before", String(20)),
    Column("status_after", String(20)),
    Column("detail", Text),
    # retry: the session's newest execution_order when the retry began (see engine/batch.py)
    Column("mark", Integer),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Index("ux_flowcli_batch_items_batch_session", "batch_id", "session_id", unique=True),
    Index("ix_flowcli_batch_items_batch_position", "batch_id", "position"),
)

# Tables flowcli owns (creates, repairs). Anything else in a database is left alone.
OWNED_TABLES: tuple[str, ...] = tuple(METADATA.tables)


def include_owned_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: compare and migrate only flowcli's own tables."""
    return type_ != "table" or name in METADATA.tables
