"""Each rule of docs/engine.md, proved on a real SQLite file through the CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import ROLES, logs, messages, new_session, session_row, step_orders

# Every rule holds on both backends.
BACKENDS = ("sqlite", "postgres")


def test_loop_runs_body_max_loops_plus_one_times(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    summary = cli.json("auto", str(sid))
    assert summary["final_status"] == "finished"
    rows = logs(cli.db, sid)
    assert step_orders(rows) == [1, 2, 1, 2, 1, 2, 1, 2, 3]
    assert [r["loop_iteration"] for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3, 0]
    loop_rows = [r for r in rows if r["step_snapshot"]["order"] == 2]
    assert [r["result_type"] for r in loop_rows] == ["loop_continue"] * 3 + ["loop_break"]
    assert [r["loop_check_result"] for r in loop_rows] == [1, 1, 1, 0]
    assert [r["execution_order"] for r in rows] == list(range(1, 10))


def test_repeats_point_to_first_pass_log(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    rows = logs(cli.db, sid)
    first_a, first_b = rows[0]["id"], rows[1]["id"]
    assert rows[0]["parent_log_id"] is None and rows[1]["parent_log_id"] is None
    for row in rows[2:8]:
        expected = first_a if row["step_snapshot"]["order"] == 1 else first_b
        assert row["parent_log_id"] == expected
    assert rows[8]["parent_log_id"] is None


def test_loop_counters_reset_in_a_later_round(cli: Cli) -> None:
    flow = LOOP_FLOW.replace("name: loop", "name: loop2\ntermination_config: {max_rounds: 2}")
    sid = new_session(cli, flow)
    cli.ok("auto", str(sid), "--quiet")
    rows = logs(cli.db, sid)
    assert len(rows) == 18
    assert [r["round_index"] for r in rows] == [1] * 9 + [2] * 9
    assert [r["loop_iteration"] for r in rows[9:]] == [0, 0, 1, 1, 2, 2, 3, 3, 0]
    second_round_first_a = rows[9]["id"]
    assert rows[11]["parent_log_id"] == second_round_first_a
    row = session_row(cli.db, sid)
    assert row["status"] == "finished" and row["ended_at"] is not None
    assert row["current_round"] == 2


def test_false_condition_skips_with_a_log_and_no_message(cli: Cli) -> None:
    flow = (
        ROLES
        + """
name: cond
steps:
  - {speaker_role_ref: A, task_type: comment, context_scope: none}
  - speaker_role_ref: B
    task_type: comment
    context_scope: none
    logic_config: {condition: "round >= 2"}
  - speaker_role_ref: C
    task_type: comment
    context_scope: none
    logic_config: {condition: "executed_steps >= 1"}
"""
    )
    sid = new_session(cli, flow)
    cli.ok("auto", str(sid), "--quiet")
    rows = logs(cli.db, sid)
    assert [r["status"] for r in rows] == ["completed", "skipped", "completed"]
    skipped = rows[1]
    assert skipped["result_type"] == "condition_false"
    assert skipped["condition_evaluation"] == 0
    assert rows[2]["condition_evaluation"] == 1
    assert rows[0]["condition_evaluation"] is None
    assert len(messages(cli.db, sid)) == 2


def test_exit_condition_ends_the_loop_not_the_session(cli: Cli) -> None:
    flow = (
        ROLES
        + """
name: exitloop
responder:
  type: template
  template: "{% if loop_iteration >= 1 %}I agree{% else %}no{% endif %}"
steps:
  - {speaker_role_ref: A, task_type: challenge, context_scope: none}
  - speaker_role_ref: B
    task_type: support
    context_scope: last_message
    logic_config:
      next_step_order: 1
      max_loops: 5
      exit_condition: {type: expression, expr: "'agree' in last.content"}
  - {speaker_role_ref: C, task_type: conclude, context_scope: all}
"""
    )
    sid = new_session(cli, flow)
    cli.ok("auto", str(sid), "--quiet")
    rows = logs(cli.db, sid)
    assert step_orders(rows) == [1, 2, 1, 2, 3]
    assert [r["result_type"] for r in rows] == [
        "success",
        "loop_continue",
        "success",
        "loop_break",
        "success",
    ]
    assert session_row(cli.db, sid)["status"] == "finished"


def test_llm_accept_flag_exit_condition(cli: Cli) -> None:
    flow = (
        ROLES
        + """
name: accept
responder:
  type: template
  template: '{"accept": {{ "true" if loop_iteration >= 2 else "false" }}}'
steps:
  - speaker_role_ref: A
    task_type: review_answer
    context_scope: none
    logic_config:
      next_step_order: 1
      max_loops: 10
      exit_condition: {type: llm_accept_flag}
  - {speaker_role_ref: B, task_type: conclude, context_scope: none}
"""
    )
    sid = new_session(cli, flow)
    cli.ok("auto", str(sid), "--quiet")
    rows = logs(cli.db, sid)
    assert step_orders(rows) == [1, 1, 1, 2]
    assert rows[2]["result_type"] == "loop_break"


def test_max_steps_fails_the_session_with_a_reason(cli: Cli) -> None:
    flow = LOOP_FLOW.replace("name: loop", "name: capped\ntermination_config: {max_steps: 4}")
    sid = new_session(cli, flow)
    result = cli("auto", str(sid), "--quiet")
    assert result.exit_code == 1
    row = session_row(cli.db, sid)
    assert row["status"] == "failed"
    assert "max_steps (4)" in row["error_reason"]
    assert len(logs(cli.db, sid)) == 4


def test_end_condition_finishes_early(cli: Cli) -> None:
    flow = LOOP_FLOW.replace(
        "name: loop", "name: ends\ntermination_config: {end_condition: 'executed_steps >= 3'}"
    )
    sid = new_session(cli, flow)
    cli.ok("auto", str(sid), "--quiet")
    assert len(logs(cli.db, sid)) == 3
    row = session_row(cli.db, sid)
    assert row["status"] == "finished" and row["current_step_id"] is None


@pytest.mark.parametrize(
    ("scope", "param", "expected"),
    [
        ("none", None, []),
        ("__TOPIC__", None, []),
        ("all", None, [1, 2, 3, 4]),
        ("last_message", None, [4]),
        ("last_n_messages", {"n": 2}, [3, 4]),
        ("last_n_messages", None, [1, 2, 3, 4]),
        ("A", None, [1, 3]),
        (["A", "B"], None, [1, 2, 3, 4]),
        ("last_round", None, [1, 2]),
    ],
)
def test_context_scopes(cli: Cli, scope: object, param: object, expected: list[int]) -> None:
    # Round 1: A, B. Round 2: A, B, then the probe step C sees the scope.
    param_line = f"    context_param: {json.dumps(param)}\n" if param else ""
    flow = (
        ROLES
        + f"""
name: scopes
termination_config: {{max_rounds: 2}}
steps:
  - {{speaker_role_ref: A, task_type: comment, context_scope: none}}
  - {{speaker_role_ref: B, task_type: comment, context_scope: none}}
  - speaker_role_ref: C
    task_type: summarize
    context_scope: {json.dumps(scope)}
{param_line}    logic_config: {{condition: "round == 2"}}
"""
    )
    sid = new_session(cli, flow)
    cli.ok("auto", str(sid), "--quiet")
    rows = logs(cli.db, sid)
    msgs = [m["id"] for m in messages(cli.db, sid)]
    probe = rows[-1]
    assert probe["step_snapshot"]["order"] == 3 and probe["status"] == "completed"
    ids = probe["context_snapshot"]["context"]["message_ids"]
    assert ids == [msgs[i - 1] for i in expected]


def test_every_log_column_is_meaningful(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW, "--var", "mood=happy")
    cli.ok("auto", str(sid), "--quiet")
    row = logs(cli.db, sid)[1]
    assert row["status"] == "completed" and row["attempt_count"] == 1
    assert row["duration_ms"] is not None and row["memory_usage_mb"] > 0
    assert row["created_at"] and row["started_at"] and row["completed_at"]
    assert row["step_snapshot"]["speaker_role_ref"] == "B"
    ctx = row["context_snapshot"]
    assert ctx["round"] == 1 and ctx["vars"] == {"mood": "happy"}
    assert ctx["context"]["scope"] == "last_message" and len(ctx["context"]["message_ids"]) == 1
    data = row["result_data"]
    assert data["message_id"] == messages(cli.db, sid)[1]["id"]
    assert data["responder"] == {"type": "template"}
    assert data["decision"].startswith("loop back to step 1")


def test_next_step_id_is_honoured(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW.replace("name: loop", "name: jumpy"))
    snap = json.loads(
        cli.sql("SELECT flow_snapshot FROM sessions WHERE id = :id", id=sid)[0]["flow_snapshot"]
    )
    # Step 1 jumps straight to step 3 (MRC's next_step_id), skipping the loop.
    snap["steps"][0]["next_step_id"] = snap["steps"][2]["id"]
    cli.sql("UPDATE sessions SET flow_snapshot = :s WHERE id = :id", s=json.dumps(snap), id=sid)
    cli.ok("auto", str(sid), "--quiet")
    assert step_orders(logs(cli.db, sid)) == [1, 3]


def test_session_runs_from_snapshot_after_template_replaced(cli: Cli, tmp_path) -> None:
    from tests.helpers import import_flow

    flow_id = import_flow(cli, LOOP_FLOW)
    sid = cli.json("session", "create", "--flow", str(flow_id))["id"]
    cli.ok("run-next", str(sid))
    replacement = (
        ROLES
        + """
name: loop
steps:
  - {speaker_role_ref: C, task_type: conclude, context_scope: none}
"""
    )
    path = tmp_path / "replacement.yaml"
    path.write_text(replacement)
    assert cli.json("flow", "import", str(path), "--replace")["id"] == flow_id
    cli.ok("auto", str(sid), "--quiet")
    assert step_orders(logs(cli.db, sid)) == [1, 2, 1, 2, 1, 2, 1, 2, 3]
    new_sid = cli.json("session", "create", "--flow", str(flow_id))["id"]
    cli.ok("auto", str(new_sid), "--quiet")
    assert step_orders(logs(cli.db, new_sid)) == [1]


def test_mrc_max_loops_string_and_missing_max_loops(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW.replace("name: loop", "name: loose"))
    snap = json.loads(
        cli.sql("SELECT flow_snapshot FROM sessions WHERE id = :id", id=sid)[0]["flow_snapshot"]
    )
    snap["steps"][1]["logic_config"] = {"next_step_order": 1, "max_loops": "2"}
    cli.sql("UPDATE sessions SET flow_snapshot = :s WHERE id = :id", s=json.dumps(snap), id=sid)
    cli.ok("auto", str(sid), "--quiet")
    assert step_orders(logs(cli.db, sid)) == [1, 2, 1, 2, 1, 2, 3]
    sid2 = new_session(cli, LOOP_FLOW.replace("name: loop", "name: loose2"))
    snap["steps"][1]["logic_config"] = {"next_step_order": 1}
    cli.sql("UPDATE sessions SET flow_snapshot = :s WHERE id = :id", s=json.dumps(snap), id=sid2)
    cli.ok("auto", str(sid2), "--quiet")
    assert step_orders(logs(cli.db, sid2)) == [1, 2, 3]
