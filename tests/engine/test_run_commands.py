"""`run-next`, `auto`, `explain` and `demo` as a user runs them."""

from __future__ import annotations

import json

from flowcli.db.tables import STEP_LOG_COLUMNS
from tests.conftest import Cli
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import ROLES, logs, messages, new_session, session_row, step_orders
from tests.llm_server import Behaviour

BACKENDS = ("sqlite", "postgres")


def test_run_next_starts_and_runs_one_step(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    assert session_row(cli.db, sid)["status"] == "not_started"
    result = cli.ok("run-next", str(sid))
    assert "step executed" in result.stdout
    assert "loop" not in result.stdout.split("next")[0] or True
    row = session_row(cli.db, sid)
    assert row["status"] == "running" and row["executed_steps_count"] == 1
    assert len(logs(cli.db, sid)) == 1


def test_run_next_json_shape(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    data = cli.json("run-next", str(sid))
    assert set(data) == {"session", "log", "message"}
    assert set(data["log"]) == {"id", *STEP_LOG_COLUMNS}
    assert data["log"]["result_type"] == "loop_continue"
    assert data["log"]["loop_check_result"] is True
    for key in ("status", "current_step_id", "current_round", "executed_steps_count"):
        assert key in data["session"]
    assert data["message"]["content"]
    assert data["message"]["speaker"] == "B"


def test_run_next_panel_shows_decisions(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    out = cli.ok("run-next", str(sid)).stdout
    assert "2. B → A (answer_question)" in out
    assert "loop_continue" in out
    assert "loop back to step 1 (jump 1 of 3)" in out
    assert " ms" in out


def test_skipped_step_json_has_null_message(cli: Cli) -> None:
    flow = (
        ROLES
        + """
name: skip
steps:
  - speaker_role_ref: A
    task_type: comment
    context_scope: none
    logic_config: {condition: "round > 5"}
  - {speaker_role_ref: B, task_type: comment, context_scope: none}
"""
    )
    sid = new_session(cli, flow)
    data = cli.json("run-next", str(sid))
    assert data["message"] is None
    assert data["log"]["status"] == "skipped"
    assert data["log"]["condition_evaluation"] is False


def test_dry_run_writes_nothing(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    before = session_row(cli.db, sid)
    data = cli.json("run-next", str(sid), "--dry-run")
    assert data["step"]["order"] == 1 and data["will_start"] is True
    assert session_row(cli.db, sid) == before
    assert logs(cli.db, sid) == []
    cli.ok("run-next", str(sid))
    data = cli.json("run-next", str(sid), "--dry-run")
    assert data["step"]["order"] == 2
    assert data["loops"][0]["jumps_left"] == 3
    assert data["loops"][0]["if_run"] == "jump back to step 1"
    text = cli.ok("run-next", str(sid), "--dry-run").stdout
    assert "nothing written" in text


def test_finished_session_refuses(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    result = cli("run-next", str(sid))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: session {sid} is finished; there is no next step"


def test_cancelled_session_refuses(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("session", "cancel", str(sid))
    result = cli("run-next", str(sid))
    assert result.exit_code == 1 and "cancelled" in result.stderr


def test_unknown_session(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    for args in (["run-next", "99999"], ["auto", "99999"], ["explain", "99999"]):
        result = cli(*args)
        assert result.exit_code == 1
        assert result.stderr.strip() == "Error: session 99999 does not exist"


def test_auto_accepts_option_or_positional(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    assert cli.json("auto", "--session", str(sid), "--max-steps", "2")["steps_run"] == 2
    summary = cli.json("auto", str(sid))
    assert summary["steps_run"] == 7 and summary["stop_reason"] == "finished"
    assert cli("auto").exit_code == 2


def test_auto_until_step_stops_before_it(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    summary = cli.json("auto", str(sid), "--until-step", "3")
    assert summary["stop_reason"] == "until_step" and summary["steps_run"] == 8
    assert step_orders(logs(cli.db, sid))[-1] == 2
    summary = cli.json("auto", str(sid))
    assert summary["steps_run"] == 1 and summary["final_status"] == "finished"


def test_messages_equal_completed_executions(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    completed = [r for r in logs(cli.db, sid) if r["status"] == "completed"]
    assert len(messages(cli.db, sid)) == len(completed) == 9


def test_template_error_fails_step_for_good_without_retry(cli: Cli) -> None:
    flow = (
        ROLES
        + """
name: broken
responder: {type: template, template: "{{ vars.missing }}"}
steps:
  - {speaker_role_ref: A, task_type: comment, context_scope: none}
"""
    )
    sid = new_session(cli, flow)
    result = cli("auto", str(sid), "--quiet")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: session")
    rows = logs(cli.db, sid)
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert rows[0]["result_type"] == "error" and rows[0]["error_message"]
    row = session_row(cli.db, sid)
    assert row["status"] == "failed" and row["error_reason"]


def _openai_flow() -> str:
    return (
        ROLES
        + """
name: llm
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - {speaker_role_ref: B, target_role_ref: A, task_type: answer_question, context_scope: all}
"""
    )


def _llm_args(fake_llm: object) -> list[str]:
    return [
        "--responder",
        "openai",
        "--llm-base-url",
        fake_llm.base_url,  # type: ignore[attr-defined]
        "--llm-model",
        "m1",
        "--llm-api-key",
        "sk-secret-123",
        "--llm-timeout",
        "2",
        "--retry-backoff",
        "0.01",
    ]


def test_transient_failures_retry_with_counted_attempts(cli: Cli, fake_llm) -> None:
    sid = new_session(cli, _openai_flow())
    # Each engine attempt makes 1 + --llm-retries HTTP calls; none here, so the engine's
    # own retries are what the log shows.
    fake_llm.then(Behaviour(kind="status", status=500), Behaviour(kind="status", status=503))
    data = cli.json(
        "run-next", str(sid), *_llm_args(fake_llm), "--retries", "2", "--llm-retries", "0"
    )
    rows = logs(cli.db, sid)
    assert [r["status"] for r in rows] == ["failed", "failed", "completed"]
    assert [r["attempt_count"] for r in rows] == [1, 2, 3]
    assert [r["execution_order"] for r in rows] == [1, 2, 3]
    assert data["log"]["attempt_count"] == 3
    assert all("HTTP 5" in r["error_message"] for r in rows[:2])


def test_retries_run_out_then_session_fails_and_auto_stops(cli: Cli, fake_llm) -> None:
    sid = new_session(cli, _openai_flow())
    fake_llm.default = Behaviour(kind="status", status=500)
    result = cli(
        "auto", str(sid), *_llm_args(fake_llm), "--retries", "1", "--llm-retries", "0", "--quiet"
    )
    assert result.exit_code == 1
    rows = logs(cli.db, sid)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert [r["attempt_count"] for r in rows] == [1, 2]
    row = session_row(cli.db, sid)
    assert row["status"] == "failed" and "HTTP 500" in row["error_reason"]
    calls = len(fake_llm.requests)
    # It never loops on a failing step: another auto refuses instead of calling again.
    again = cli("auto", str(sid), *_llm_args(fake_llm), "--quiet")
    assert again.exit_code == 1 and "session resume" in again.stderr
    assert len(fake_llm.requests) == calls
    # Resume makes it runnable; attempts keep counting up.
    cli.ok("session", "resume", str(sid))
    fake_llm.default = Behaviour()
    cli.ok("auto", str(sid), *_llm_args(fake_llm), "--quiet")
    rows = logs(cli.db, sid)
    assert rows[2]["status"] == "completed" and rows[2]["attempt_count"] == 3
    assert session_row(cli.db, sid)["status"] == "finished"


def test_openai_responder_request_and_key_never_stored(cli: Cli, fake_llm) -> None:
    sid = new_session(cli, _openai_flow())
    cli.ok("auto", str(sid), *_llm_args(fake_llm), "--quiet")
    first, second = fake_llm.requests[:2]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer sk-secret-123"
    body = first["body"]
    assert body["model"] == "m1"
    assert body["messages"][0] == {"role": "system", "content": "You are A."}
    assert "Topic:" in body["messages"][-1]["content"]
    # The second step sees the first message as context.
    assert any("reply #1" in m["content"] for m in second["body"]["messages"])
    rows = logs(cli.db, sid)
    assert rows[0]["result_data"]["tokens"]["total_tokens"] == 18
    dump = json.dumps(
        cli.sql("SELECT result_data, context_snapshot, step_snapshot FROM step_execution_logs")
    )
    assert "sk-secret-123" not in dump


def test_schema_guard_refuses_and_leaves_session_untouched(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    before = session_row(cli.db, sid)
    cli.sql("DROP TABLE step_execution_logs")
    result = cli("run-next", str(sid))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "step_execution_logs" in lines[0] and "flowcli db doctor --fix" in lines[0]
    assert "rolled back" not in result.stderr
    assert session_row(cli.db, sid) == before


def test_explain_says_why(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--max-steps", "2", "--quiet")
    data = cli.json("explain", str(sid))
    assert data["step"]["order"] == 1
    assert data["previous"]["decision"].startswith("loop back to step 1")
    assert data["loop_iteration"] == 1
    text = cli.ok("explain", str(sid)).stdout
    assert "loop back to step 1 (jump 1 of 3)" in text
    assert session_row(cli.db, sid)["executed_steps_count"] == 2


def test_demo_runs_end_to_end(cli: Cli) -> None:
    result = cli.ok("demo")
    assert "finished" in result.stderr
    assert "completed" in result.stdout and "skipped" in result.stdout
    data = json.loads(cli.ok("demo", "--json").stdout)
    assert data["summary"]["final_status"] == "finished"
