"""State from the log: a session continues exactly as one engine would, whatever its cache.

The loop counters, first-pass ids, rounds and attempts are rebuilt by replaying the log
(flowcli.engine.replay) whenever ``sessions.engine_state`` is absent, or stale (its stamp
is not the session's executed_steps_count). Rows without a recorded decision (as MRC
writes them) are replayed from where the session actually went next.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Cli
from tests.helpers import ROLES, logs, new_session, session_row

BACKENDS = ("sqlite", "postgres")

# Nested loops in two rounds: the inner loop (2 -> 2) sits in the outer one (4 -> 1).
NESTED = (
    ROLES
    + """
name: nested
termination_config: {max_rounds: 2}
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - speaker_role_ref: B
    task_type: answer_question
    context_scope: last_message
    logic_config: {next_step_order: 2, max_loops: 2}
  - {speaker_role_ref: C, task_type: comment, context_scope: none}
  - speaker_role_ref: A
    task_type: review_answer
    context_scope: none
    logic_config: {next_step_order: 1, max_loops: 1}
  - {speaker_role_ref: C, task_type: summarize, context_scope: all}
"""
)
COLUMNS = ("step_id", "round_index", "loop_iteration", "result_type", "loop_check_result")


def _trace(cli: Cli, sid: int) -> list[tuple[Any, ...]]:
    rows = logs(cli.db, sid)
    first = rows[0]["id"]
    # parent_log_id as an offset from the session's first row, comparable across sessions.
    return [
        (
            *(r[c] for c in COLUMNS),
            None if r["parent_log_id"] is None else r["parent_log_id"] - first,
        )
        for r in rows
    ]


@pytest.fixture
def straight(cli: Cli) -> tuple[int, list[tuple[Any, ...]], int]:
    """The flow run start to end by one engine with its cache: (flow id, trace, steps)."""
    sid = new_session(cli, NESTED)
    cli.ok("auto", str(sid), "--quiet")
    flow_id = session_row(cli.db, sid)["flow_template_id"]
    trace = _trace(cli, sid)
    return flow_id, trace, len(trace)


def _session(cli: Cli, flow_id: int) -> int:
    return int(cli.json("session", "create", "--flow", str(flow_id))["id"])


def _forget_cache(cli: Cli, sid: int, *, like_mrc: bool) -> None:
    cli.sql("UPDATE sessions SET engine_state = NULL WHERE id = :id", id=sid)
    if like_mrc:
        # MRC records no decision: where each row led is read from the row after it.
        cli.sql("UPDATE step_execution_logs SET result_data = NULL WHERE session_id = :id", id=sid)


# Every k on one backend; the replay's one query runs on PostgreSQL in the tests below.
@pytest.mark.sqlite_only
@pytest.mark.parametrize("like_mrc", [False, True], ids=["flowcli-rows", "mrc-rows"])
def test_every_handoff_point_continues_as_one_engine(
    cli: Cli, straight: tuple[int, list[tuple[Any, ...]], int], like_mrc: bool
) -> None:
    flow_id, trace, total = straight
    for k in range(1, total):
        sid = _session(cli, flow_id)
        cli.ok("auto", str(sid), "--max-steps", str(k), "--quiet")
        _forget_cache(cli, sid, like_mrc=like_mrc)
        cli.ok("auto", str(sid), "--quiet")
        assert _trace(cli, sid) == trace, f"hand-off after {k} steps"


def test_a_stale_cache_is_detected_and_rebuilt(
    cli: Cli, straight: tuple[int, list[tuple[Any, ...]], int]
) -> None:
    flow_id, trace, _total = straight
    sid = _session(cli, flow_id)
    cli.ok("auto", str(sid), "--max-steps", "3", "--quiet")
    old = session_row(cli.db, sid)["engine_state"]
    cli.ok("auto", str(sid), "--max-steps", "4", "--quiet")
    # Another engine ran those four steps and left the cache of three steps before.
    cli.sql("UPDATE sessions SET engine_state = :s WHERE id = :id", s=old, id=sid)
    assert json.loads(old)["at"] == 3 and session_row(cli.db, sid)["executed_steps_count"] == 7
    explained = cli.json("explain", str(sid))
    assert explained["engine_state"] == "rebuilt from the log"
    cli.ok("auto", str(sid), "--quiet")
    assert _trace(cli, sid) == trace


def test_explain_shows_the_rebuilt_counters(
    cli: Cli, straight: tuple[int, list[tuple[Any, ...]], int]
) -> None:
    flow_id, _trace, _total = straight
    sid = _session(cli, flow_id)
    cli.ok("auto", str(sid), "--max-steps", "3", "--quiet")  # 1, 2, 2: one inner jump made
    cached = cli.json("explain", str(sid))
    _forget_cache(cli, sid, like_mrc=True)
    rebuilt = cli.json("explain", str(sid))
    assert cached["engine_state"] == "cached" and rebuilt["engine_state"] == "rebuilt from the log"
    for key in ("loops", "loop_iteration", "attempt", "parent_log_id", "step"):
        assert rebuilt[key] == cached[key], key
    inner = next(loop for loop in rebuilt["loops"] if loop["loop_step_order"] == 2)
    assert inner["jumps_made"] == 2 and inner["jumps_left"] == 0


def test_failed_attempts_are_counted_from_the_log(cli: Cli) -> None:
    flow = ROLES + "name: one\nsteps:\n  - {speaker_role_ref: A, task_type: comment}\n"
    sid = new_session(cli, flow)
    dead = ["--responder", "openai", "--llm-base-url", "http://127.0.0.1:9/v1"]
    dead += ["--llm-model", "m", "--retries", "1", "--retry-backoff", "0.01"]
    assert cli("run-next", str(sid), *dead).exit_code == 1
    cli.ok("session", "resume", str(sid))
    _forget_cache(cli, sid, like_mrc=False)
    data = cli.json("run-next", str(sid))
    assert data["log"]["attempt_count"] == 3
    assert [r["execution_order"] for r in logs(cli.db, sid)] == [1, 2, 3]


def test_every_logged_execution_leaves_mrc_next_number_free(cli: Cli) -> None:
    """executed_steps_count is the number of executions logged (attempts, skips included),
    and a row's number is above every row and above the count."""
    flow = (
        ROLES
        + "name: three\nsteps:\n"
        + "".join(f"  - {{speaker_role_ref: {ref}, task_type: comment}}\n" for ref in "ABC")
    )
    sid = new_session(cli, flow)
    dead = ["--responder", "openai", "--llm-base-url", "http://127.0.0.1:9/v1"]
    assert cli("run-next", str(sid), *dead, "--llm-model", "m", "--retries", "0").exit_code == 1
    assert session_row(cli.db, sid)["executed_steps_count"] == 1
    cli.ok("session", "skip", str(sid))
    assert session_row(cli.db, sid)["executed_steps_count"] == 2
    # Another engine's count ran ahead of the log (rows it numbered were removed): the
    # next row is numbered above the count, so the count's next number stays free.
    cli.sql("UPDATE sessions SET executed_steps_count = 5 WHERE id = :id", id=sid)
    cli.ok("run-next", str(sid))
    assert [r["execution_order"] for r in logs(cli.db, sid)] == [1, 2, 6]
    assert session_row(cli.db, sid)["executed_steps_count"] == 6
