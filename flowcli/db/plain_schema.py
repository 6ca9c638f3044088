"""flowcli's schema as plain names, for the code that must not import SQLAlchemy.

The one-step commands on SQLite (run-next, explain, session show/list, logs) check and
read the schema through the sqlite3 driver alone, so they need the models' table and
column names, and which columns SQLAlchemy reads as datetimes and booleans, without the
models themselves. The models in flowcli.db.tables stay the owner: a test holds this
module equal to them (tests/db/test_plain_schema.py).
"""

from __future__ import annotations

# The columns of the bug report's INSERT, in its order; tests hold the table to it.
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

# The tables flowcli shares with MRC (MRC's names and columns). Any other table of the
# models is flowcli's alone (flowcli_meta, and whatever later revisions add).
SHARED_TABLES: tuple[str, ...] = (
    "roles",
    "flow_templates",
    "flow_steps",
    "sessions",
    "session_roles",
    "messages",
    "step_execution_logs",
)

# Every table of the models with its columns, in the models' order.
MODEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "roles": ("id", "name", "prompt", "created_at", "updated_at"),
    "flow_templates": (
        "id",
        "name",
        "topic",
        "type",
        "description",
        "version",
        "is_active",
        "termination_config",
        "created_at",
        "updated_at",
        "responder",
    ),
    "flow_steps": (
        "id",
        "flow_template_id",
        "order",
        "speaker_role_ref",
        "target_role_ref",
        "task_type",
        "context_scope",
        "context_param",
        "logic_config",
        "next_step_id",
        "description",
    ),
    "sessions": (
        "id",
        "user_id",
        "topic",
        "flow_template_id",
        "flow_snapshot",
        "roles_snapshot",
        "status",
        "current_step_id",
        "current_round",
        "executed_steps_count",
        "error_reason",
        "created_at",
        "updated_at",
        "ended_at",
        "version",
        "lease_owner",
        "lease_expires_at",
        "engine_state",
        "variables",
        "forked_from_session_id",
        "forked_from_log_id",
        "log_summary",
    ),
    "session_roles": ("id", "session_id", "role_ref", "role_id", "created_at"),
    "messages": (
        "id",
        "session_id",
        "speaker_session_role_id",
        "target_session_role_id",
        "reply_to_message_id",
        "content",
        "content_summary",
        "round_index",
        "section",
        "created_at",
    ),
    "step_execution_logs": ("id", *STEP_LOG_COLUMNS),
    "flowcli_meta": ("key", "value"),
    "flowcli_batches": (
        "id",
        "action",
        "selector",
        "selected_at",
        "arguments",
        "status",
        "total",
        "created_at",
        "updated_at",
        "ended_at",
        "owner",
        "lease_expires_at",
    ),
    "flowcli_batch_items": (
        "id",
        "batch_id",
        "position",
        "session_id",
        "outcome",
        "status_before",
        "status_after",
        "detail",
        "mark",
        "started_at",
        "finished_at",
    ),
}

# Columns SQLAlchemy reads back as datetime (DateTime) and as bool (Boolean).
DATETIME_COLUMNS: dict[str, frozenset[str]] = {
    "roles": frozenset({"created_at", "updated_at"}),
    "flow_templates": frozenset({"created_at", "updated_at"}),
    "flow_steps": frozenset(),
    "sessions": frozenset({"created_at", "updated_at", "ended_at", "lease_expires_at"}),
    "session_roles": frozenset({"created_at"}),
    "messages": frozenset({"created_at"}),
    "step_execution_logs": frozenset({"created_at", "started_at", "completed_at"}),
    "flowcli_meta": frozenset(),
    "flowcli_batches": frozenset(
        {"selected_at", "created_at", "updated_at", "ended_at", "lease_expires_at"}
    ),
    "flowcli_batch_items": frozenset({"started_at", "finished_at"}),
}
BOOLEAN_COLUMNS: dict[str, frozenset[str]] = {name: frozenset() for name in MODEL_COLUMNS} | {
    "flow_templates": frozenset({"is_active"}),
    "step_execution_logs": frozenset({"condition_evaluation", "loop_check_result"}),
}
