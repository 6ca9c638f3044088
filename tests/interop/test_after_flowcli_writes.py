"""After each flowcli command that writes, MRC's own backend lists, reads, exports and runs
the session to its end; and flowcli continues what MRC started.

All on one adopted copy of the MRC fixture with MRC's real backend serving it (one
server for the module). Flow 7 is the bug report's flow: steps 21 (Jonh), 22 (Mason,
jumps back to step 1 three times) and 23 (Tom), nine executions in all.
"""

from __future__ import annotations

from typing import Any

from tests.interop.harness import ONE_ENGINE, Shared
from tests.llm_server import Behaviour, FakeLLM

FLOW = 7
DEAD_LLM = [
    "--responder",
    "openai",
    "--llm-base-url",
    "http://127.0.0.1:9/v1",
    "--llm-model",
    "m",
    "--retry-backoff",
    "0.01",
]


def _finished_by_mrc(shared: Shared, sid: int) -> dict[str, Any]:
    session = shared.mrc_continues(sid)
    assert session["status"] == "finished", session
    shared.assert_mrc_numbering_free(sid)
    return session


def test_run_next_then_mrc_runs_to_the_end(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.ok("run-next", sid)
    shared.ok("run-next", sid)
    shared.assert_mrc_numbering_free(sid)
    session = _finished_by_mrc(shared, sid)
    assert shared.steps(sid) == ONE_ENGINE[FLOW]
    # MRC keeps the last step and counts every execution.
    assert session["current_step_id"] == 23 and session["executed_steps_count"] == 9


def test_issue_repro_failed_attempt_then_mrc_continues(shared: Shared) -> None:
    """The issue's repro: a failed flowcli attempt used to leave MRC stuck (400 forever)."""
    sid = shared.mrc_session(FLOW)
    shared.ok("run-next", sid)
    failed = shared.flowcli("run-next", sid, *DEAD_LLM, "--retries", "1")
    assert failed.exit_code == 1 and failed.stderr.startswith("Error: ")
    assert shared.session_row(sid)["status"] == "failed"
    shared.assert_mrc_numbering_free(sid)
    status, payload = shared.mrc.call("PUT", f"/api/sessions/{sid}", {"status": "running"})
    assert status == 200, payload
    step = shared.mrc.run_next(sid)
    assert step["execution_info"]["step_executed"] is True
    session = _finished_by_mrc(shared, sid)
    assert session["executed_steps_count"] == len(shared.rows(sid))
    # MRC's own defect (docs/mrc.md): it counts every log row of a loop step, the two
    # failed attempts at step 22 included, so its loop makes two jumps fewer.
    assert shared.steps(sid) == [21, 22, 21, 22, 23]


def test_failed_attempt_then_flowcli_continues_with_every_loop(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.ok("run-next", sid)
    assert shared.flowcli("run-next", sid, *DEAD_LLM, "--retries", "1").exit_code == 1
    shared.ok("session", "resume", sid)
    shared.ok("auto", sid, "--quiet")
    assert shared.steps(sid) == ONE_ENGINE[FLOW]
    shared.mrc_continues(sid)  # MRC still lists, reads and exports it


def test_retried_step_then_mrc_runs_to_the_end(shared: Shared, fake_llm: FakeLLM) -> None:
    sid = shared.mrc_session(FLOW)
    fake_llm.then(Behaviour(kind="status", status=500))
    llm = ["--responder", "openai", "--llm-base-url", fake_llm.base_url, "--llm-model", "m"]
    shared.ok("run-next", sid, *llm, "--llm-retries", "0", "--retries", "1", "--retry-backoff", "0")
    assert [r["status"] for r in shared.rows(sid)] == ["failed", "completed"]
    _finished_by_mrc(shared, sid)
    assert shared.steps(sid) == ONE_ENGINE[FLOW]


def test_session_retry_then_mrc_runs_to_the_end(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    assert shared.flowcli("run-next", sid, *DEAD_LLM, "--retries", "0").exit_code == 1
    shared.ok("session", "retry", sid)
    assert [r["status"] for r in shared.rows(sid)] == ["failed", "completed"]
    _finished_by_mrc(shared, sid)
    assert shared.steps(sid) == ONE_ENGINE[FLOW]


def test_session_skip_then_mrc_runs_to_the_end(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.ok("session", "skip", sid, "--reason", "interop")
    _finished_by_mrc(shared, sid)
    # flowcli alone, skipping the same step, runs the same steps.
    alone = shared.mrc_session(FLOW)
    shared.ok("session", "skip", alone)
    shared.ok("auto", alone, "--quiet")
    assert shared.steps(sid) == shared.steps(alone) == ONE_ENGINE[FLOW][1:]


def test_session_fork_then_mrc_runs_the_fork_to_the_end(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.mrc_steps(sid, 3)
    second = shared.rows(sid)[1]["id"]  # step 22's first pass: it jumped back
    fork = shared.json("session", "fork", sid, "--at", second)["id"]
    assert shared.session_row(fork)["current_step_id"] == 21
    _finished_by_mrc(shared, fork)
    assert shared.steps(fork) == ONE_ENGINE[FLOW]


def test_session_cancel_writes_mrc_word_terminated(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.ok("run-next", sid)
    shared.ok("session", "cancel", sid)
    assert shared.session_row(sid)["status"] == "terminated"
    shared.mrc_continues(sid)  # lists, reads, exports; there is nothing to run
    assert shared.mrc.session(sid)["status"] == "terminated"
    # MRC refuses to run it, as it refuses its own terminated sessions; so does flowcli.
    status, _payload = shared.mrc.call("POST", f"/api/sessions/{sid}/run-next-step", {})
    assert status == 400
    refused = shared.flowcli("run-next", sid)
    assert refused.exit_code == 1 and "terminated" in refused.stderr
    listed = shared.json("session", "list", "--status", "terminated")
    assert sid in [s["id"] for s in listed]


def test_session_pause_then_mrc_resumes_and_runs_to_the_end(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.ok("run-next", sid)
    shared.ok("session", "pause", sid)
    shared.mrc.control(sid, "resume")
    _finished_by_mrc(shared, sid)
    assert shared.steps(sid) == ONE_ENGINE[FLOW]


def test_session_pause_and_resume_then_mrc_runs_to_the_end(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.ok("session", "pause", sid)
    shared.ok("session", "resume", sid)
    _finished_by_mrc(shared, sid)
    assert shared.steps(sid) == ONE_ENGINE[FLOW]


def test_session_delete_leaves_mrc_working(shared: Shared) -> None:
    doomed = shared.mrc_session(FLOW)
    shared.ok("run-next", doomed)
    other = shared.mrc_session(FLOW)
    shared.ok("session", "delete", doomed, "--yes")
    assert doomed not in [s["id"] for s in shared.mrc.list_sessions()["sessions"]]
    status, _payload = shared.mrc.call("GET", f"/api/sessions/{doomed}")
    assert status == 404
    _finished_by_mrc(shared, other)


def test_worker_then_mrc_reads_the_finished_session(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.mrc_steps(sid, 1)
    shared.ok("worker", "--session", sid, "--max-idle", "0.3", "--poll", "0.05")
    session = _finished_by_mrc(shared, sid)
    assert session["current_step_id"] == 23
    assert shared.steps(sid) == ONE_ENGINE[FLOW]


def test_auto_then_mrc_reads_the_finished_session(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.ok("auto", sid, "--quiet")
    session = _finished_by_mrc(shared, sid)
    assert session["current_step_id"] == 23 and session["executed_steps_count"] == 9
    status, _payload = shared.mrc.call("POST", f"/api/sessions/{sid}/run-next-step", {})
    assert status == 400  # finished: MRC has nothing to run either


def test_session_created_by_flowcli_is_run_by_mrc(shared: Shared) -> None:
    sid = shared.json("session", "create", "--flow", FLOW, "--topic", "made by flowcli")["id"]
    _finished_by_mrc(shared, sid)
    assert shared.steps(sid) == ONE_ENGINE[FLOW]


def test_explain_shows_the_counters_rebuilt_from_mrc_log(shared: Shared) -> None:
    sid = shared.mrc_session(FLOW)
    shared.mrc_steps(sid, 4)  # 21 22 21 22: two jumps made
    data = shared.json("explain", sid)
    assert data["engine_state"] == "rebuilt from the log"
    assert data["step"]["id"] == 21 and data["loop_iteration"] == 2
    assert data["loops"][0]["jumps_made"] == 2 and data["loops"][0]["jumps_left"] == 1
    assert data["parent_log_id"] == shared.rows(sid)[0]["id"]


def test_rows_are_written_as_mrc_writes_them(shared: Shared) -> None:
    """Flow 3's step 2 summarizes: MRC raises the round after it, labels sections."""
    by_mrc = shared.mrc_session(3)
    shared.mrc.run_to_end(by_mrc)
    by_flowcli = shared.mrc_session(3)
    shared.ok("auto", by_flowcli, "--quiet")
    mine, theirs = shared.session_row(by_flowcli), shared.session_row(by_mrc)
    for column in ("status", "current_step_id", "current_round", "executed_steps_count"):
        assert mine[column] == theirs[column], column
    assert theirs["current_round"] == 1 + 13

    def messages(sid: int) -> list[tuple[Any, ...]]:
        rows = shared.mrc.messages(sid)["messages"]
        return sorted((m["id"], m["section"], m["round_index"]) for m in rows)

    assert [m[1:] for m in messages(by_flowcli)] == [m[1:] for m in messages(by_mrc)]
    summaries = [m["content_summary"] for m in shared.mrc.messages(by_flowcli)["messages"]]
    assert all(summaries) and all(len(s) <= 100 for s in summaries)


def test_every_fixture_session_stays_readable_and_51_runs(shared: Shared) -> None:
    """The adoption (module fixture: `db doctor --fix` on an intact copy) keeps every
    session MRC had readable by MRC, and the bug report's session 51 runs to its end."""
    for sid in range(1, 59):
        status, payload = shared.mrc.call("GET", f"/api/sessions/{sid}")
        assert status == 200 and payload["success"], (sid, payload.get("message"))
    _finished_by_mrc(shared, 51)
    assert shared.steps(51)[-9:] == ONE_ENGINE[FLOW]
