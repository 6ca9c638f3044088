"""MRC's own definition of ``step_execution_logs``, and the columns flowcli adds to MRC's tables.

When an MRC database lacks its step log (the bug report's state: the table was never
created), adoption recreates it exactly as MRC defines it: MRC's columns in MRC's
order, MRC's foreign keys (no ON DELETE actions) and MRC's eleven ``idx_step_logs_*``
indexes, so that every adoption path leaves the same schema and MRC's code finds what
it expects. These are facts read off MRC's database (``sqlite_master`` of the MRC
fixture); a test holds them equal to it. flowcli knows no other table of MRC's well
enough to recreate it; the doctor leaves any other missing MRC table to a backup.
"""

from __future__ import annotations

# The statements, as SQLite stores them in sqlite_master of an MRC database.
MRC_STEP_LOG_DDL: tuple[str, ...] = (
    "CREATE TABLE step_execution_logs (\n"
    "\tid INTEGER NOT NULL, \n"
    "\tsession_id INTEGER NOT NULL, \n"
    "\tstep_id INTEGER NOT NULL, \n"
    "\tparent_log_id INTEGER, \n"
    "\texecution_order INTEGER NOT NULL, \n"
    "\tround_index INTEGER, \n"
    "\tloop_iteration INTEGER, \n"
    "\tattempt_count INTEGER, \n"
    "\tstatus VARCHAR(20), \n"
    "\tresult_type VARCHAR(50), \n"
    "\tresult_data TEXT, \n"
    "\tcondition_evaluation BOOLEAN, \n"
    "\tloop_check_result BOOLEAN, \n"
    "\terror_message TEXT, \n"
    "\tduration_ms INTEGER, \n"
    "\tmemory_usage_mb FLOAT, \n"
    "\tcreated_at DATETIME, \n"
    "\tstarted_at DATETIME, \n"
    "\tcompleted_at DATETIME, \n"
    "\tstep_snapshot TEXT, \n"
    "\tcontext_snapshot TEXT, \n"
    "\tPRIMARY KEY (id), \n"
    "\tFOREIGN KEY(session_id) REFERENCES sessions (id), \n"
    "\tFOREIGN KEY(step_id) REFERENCES flow_steps (id), \n"
    "\tFOREIGN KEY(parent_log_id) REFERENCES step_execution_logs (id)\n"
    ")",
    "CREATE INDEX idx_step_logs_session_execution_order "
    "ON step_execution_logs (session_id, execution_order)",
    "CREATE INDEX idx_step_logs_step_id ON step_execution_logs (step_id)",
    "CREATE INDEX idx_step_logs_status ON step_execution_logs (status)",
    "CREATE INDEX idx_step_logs_parent_log ON step_execution_logs (parent_log_id)",
    "CREATE INDEX idx_step_logs_round_loop ON step_execution_logs (round_index, loop_iteration)",
    "CREATE INDEX idx_step_logs_created_at ON step_execution_logs (created_at)",
    "CREATE INDEX idx_step_logs_duration ON step_execution_logs (duration_ms)",
    "CREATE INDEX idx_step_logs_result_type ON step_execution_logs (result_type)",
    "CREATE INDEX idx_step_logs_session_status_execution "
    "ON step_execution_logs (session_id, status, execution_order)",
    "CREATE INDEX idx_step_logs_session_step_count ON step_execution_logs (session_id, step_id)",
    "CREATE INDEX idx_step_logs_session_step_iteration "
    "ON step_execution_logs (session_id, step_id, loop_iteration)",
)

# The MRC tables flowcli can recreate as MRC defines them (SQLite only: MRC runs on SQLite).
MRC_TABLE_DDL: dict[str, tuple[str, ...]] = {"step_execution_logs": MRC_STEP_LOG_DDL}

# Columns flowcli's later revisions add to MRC's tables (0002, 0003): nullable, ignored by
# MRC's code, and the only columns `db downgrade` may remove from them.
FLOWCLI_COLUMNS: dict[str, tuple[str, ...]] = {
    "sessions": (
        "version",
        "lease_owner",
        "lease_expires_at",
        "engine_state",
        "variables",
        "forked_from_session_id",
        "forked_from_log_id",
    ),
    "flow_templates": ("responder",),
}
