"""What a runner remembers of its own writes (the engine state, the newest message, every
message) is used only while the session is as that write left it: a message another
process wrote in between is seen by the next step's context."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcli.db.connection import Database, resolve_target
from flowcli.engine.runner import SessionRunner
from tests.conftest import Cli
from tests.helpers import ROLES, logs, messages, new_session, run_sql, session_row

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


LOOP_FLOW = (
    ROLES
    + """
name: loop
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: last_message
    logic_config: {next_step_order: 1, max_loops: 50}
"""
)


@pytest.mark.sqlite_only  # the statements are counted on SQLite's trace callback
def test_a_step_after_the_runners_own_write_reads_nothing_and_writes_once(cli: Cli) -> None:
    """While nobody else writes, a step plans on the row its own last write left: it
    reads nothing, and the session UPDATE (with every column MRC may move in its WHERE)
    is the fence."""
    db = cli.db
    assert isinstance(db, Path)
    sid = new_session(cli, LOOP_FLOW)
    database = Database(resolve_target(str(db)))
    with SessionRunner(database, sid) as runner:
        for _ in range(3):
            assert not runner.run_step().failed
        seen: list[str] = []
        runner._step_tx().raw.set_trace_callback(seen.append)
        assert not runner.run_step().failed
    database.dispose()
    words = [s.split()[0].upper() for s in seen if not s.upper().startswith("PRAGMA")]
    assert "SELECT" not in words, seen
    assert words == ["BEGIN", "UPDATE", "INSERT", "INSERT", "COMMIT"], seen
    update = next(s for s in seen if s.upper().startswith("UPDATE SESSIONS"))
    for column in ("version", "status", "current_step_id", "executed_steps_count", "topic"):
        assert column in update.split("WHERE", 1)[1], update


@pytest.mark.sqlite_only  # MRC's writes are SQL on its SQLite file
def test_mrc_moving_the_session_between_steps_is_seen_without_a_version(cli: Cli) -> None:
    """MRC bumps no version: a step it runs between two of the runner's steps (count and
    position moved), and a topic it edits, are seen by the runner's next step, which
    plans again instead of writing over them."""
    db = cli.db
    assert isinstance(db, Path)
    sid = new_session(cli, LOOP_FLOW)
    database = Database(resolve_target(str(db)))
    with SessionRunner(database, sid) as runner:
        for _ in range(3):
            assert not runner.run_step().failed
        row = run_sql(
            db,
            "SELECT current_step_id, executed_steps_count, version FROM sessions WHERE id = :s",
            s=sid,
        )[0]
        step_ids = [r["step_id"] for r in logs(db, sid)]
        # As MRC would: a log row numbered count + 1, the count and position moved, the
        # topic edited; the version left as it was.
        run_sql(
            db,
            "INSERT INTO step_execution_logs (session_id, step_id, execution_order, status, "
            "round_index) VALUES (:s, :step, :n, 'completed', 1)",
            s=sid,
            step=row["current_step_id"],
            n=row["executed_steps_count"] + 1,
        )
        run_sql(
            db,
            "UPDATE sessions SET executed_steps_count = :n, current_step_id = :next, "
            "topic = 'edited by MRC' WHERE id = :s",
            s=sid,
            n=row["executed_steps_count"] + 1,
            next=step_ids[0] if row["current_step_id"] != step_ids[0] else step_ids[1],
        )
        result = runner.run_step()
        assert not result.failed
    database.dispose()
    rows = logs(db, sid)
    orders = [r["execution_order"] for r in rows]
    assert orders == list(range(1, len(rows) + 1))
    after = session_row(db, sid)
    assert after["executed_steps_count"] == len(rows) == 5
    assert after["version"] == row["version"] + 1
    newest = messages(db, sid)[-1]
    assert "edited by MRC" in newest["content"]
