"""What a runner remembers of its own writes (the engine state, the newest message, every
message) is used only while the session is as that write left it: a message another
process wrote in between is seen by the next step's context."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcli.db.connection import Database, resolve_target
from flowcli.engine.runner import SessionRunner
from tests.conftest import Cli
from tests.helpers import ROLES, logs, new_session, run_sql

ALL_FLOW = (
    ROLES
    + """
name: everything
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: all}
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: last_message
    logic_config: {next_step_order: 1, max_loops: 50}
"""
)


def _steps(db: Path, sid: int) -> list[tuple[list[int], int]]:
    """(context message ids, id of the message written) of each execution, in order."""
    return [
        (row["context_snapshot"]["context"]["message_ids"], row["result_data"]["message_id"])
        for row in logs(db, sid)
    ]


def _message_ids(db: Path, sid: int) -> list[int]:
    rows = run_sql(db, "SELECT id FROM messages WHERE session_id = :s ORDER BY id", s=sid)
    return [r["id"] for r in rows]


@pytest.mark.sqlite_only  # the same code on PostgreSQL; one backend shows the rule
def test_a_message_written_by_another_process_is_in_the_next_context(cli: Cli) -> None:
    db = cli.db
    assert isinstance(db, Path)
    sid = new_session(cli, ALL_FLOW)
    database = Database(resolve_target(str(db)))
    with SessionRunner(database, sid) as runner:
        for _ in range(4):
            assert not runner.run_step().failed
        before = _message_ids(db, sid)
        # Another process adds a message and moves the session on (its version changes).
        run_sql(
            db,
            "INSERT INTO messages (session_id, content, round_index) VALUES (:s, 'outside', 1)",
            s=sid,
        )
        run_sql(db, "UPDATE sessions SET version = version + 1 WHERE id = :s", s=sid)
        for _ in range(4):
            assert not runner.run_step().failed
    database.dispose()
    every = _message_ids(db, sid)
    assert len(every) == len(before) + 1 + 4
    outside = every[len(before)]
    for n, (context, written) in enumerate(_steps(db, sid)):
        existing = [m for m in every if m < written]
        if n % 2 == 0:  # context_scope all: every message before this step
            assert context == existing, n
        else:  # last_message: the newest one
            assert context == existing[-1:], n
    assert outside in _steps(db, sid)[4][0]
