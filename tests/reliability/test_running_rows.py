"""Every running log row has an owner or gets recovered (issue 14).

A ``running`` step_execution_logs row that no live process holds (MRC's, written without
a claim; one whose session was cancelled while its step waited on the LLM and whose
process then stopped; one whose claiming process was killed) is reported by the doctor
with its id and session, closed by ``db doctor --fix-sessions`` and by the next
``run-next``/``auto`` as a failed "interrupted" attempt. A cancel during a step is
reported as a cancel.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

from tests.llm_server import Behaviour, FakeLLM
from tests.reliability.kill import (
    consistency_problems,
    create_session,
    flowcli,
    import_flow,
    loop_flow,
    read_logs,
    session_state,
    spawn,
)
from tests.waiting import wait_until

DEADLINE = 120.0


def _llm(fake: FakeLLM) -> list[str]:
    return ["--responder", "openai", "--llm-base-url", fake.base_url, "--llm-model", "m"]


def _doctor(db: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = flowcli(db, "db", "doctor", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def _findings(data: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for f in data["findings"] if f["check"] == check]


def _one_error_line(err: str) -> None:
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def _step_waiting_on_the_llm(
    db: Path, fake_llm: FakeLLM, gate: threading.Event
) -> tuple[int, subprocess.Popen[str]]:
    """A run-next whose LLM call is in flight (claimed and asked), held by ``gate``."""
    sid = create_session(db, import_flow(db, loop_flow(2)))
    fake_llm.default = Behaviour(gate=gate)
    proc = spawn(db, "run-next", str(sid), *_llm(fake_llm), stdout=subprocess.PIPE)
    wait_until(lambda: len(fake_llm.requests) >= 1, "the LLM call", proc=proc)
    assert [r["status"] for r in read_logs(db, sid)] == ["running"]
    return sid, proc


def test_cancel_during_an_llm_step_is_reported_as_a_cancel(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    db = tmp_path / "cancel.db"
    gate = threading.Event()
    sid, proc = _step_waiting_on_the_llm(db, fake_llm, gate)
    try:
        cancelled = flowcli(db, "session", "cancel", str(sid))
        assert cancelled.exit_code == 0, cancelled.stderr
    finally:
        gate.set()
    _out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1
    _one_error_line(err)
    assert f"session {sid} was cancelled while this step waited for its responder" in err
    assert "discarded" in err and "lease expired" not in err
    # The in-flight row is closed by its own process, saying why: nothing left running.
    [row] = read_logs(db, sid)
    assert row["status"] == "failed"
    assert row["error_message"] == (
        "discarded: the session was cancelled while this step waited for its responder"
    )
    assert session_state(db, sid)["status"] == "cancelled"
    code, data = _doctor(db)
    assert code == 0 and _findings(data, "ownerless_running") == []
    again = flowcli(db, "run-next", str(sid), *_llm(fake_llm))
    assert again.exit_code == 1 and "lease expired" not in again.stderr
    assert f"session {sid} was cancelled" in again.stderr


def test_a_step_left_running_after_a_cancel_is_found_and_closed(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    db = tmp_path / "cancel-kill.db"
    gate = threading.Event()
    sid, proc = _step_waiting_on_the_llm(db, fake_llm, gate)
    try:
        assert flowcli(db, "session", "cancel", str(sid)).exit_code == 0
        proc.kill()  # its process stops before it learns of the cancel
        proc.communicate(timeout=DEADLINE)
    finally:
        gate.set()
    [row] = read_logs(db, sid)
    assert row["status"] == "running" and session_state(db, sid)["lease_owner"] is None
    code, data = _doctor(db)
    assert code == 0  # a warning
    [finding] = _findings(data, "ownerless_running")
    assert finding["object"] == f"session {sid}"
    assert f"log row(s) {row['id']} are running" in finding["detail"]
    assert finding["fix"]["applies_with"] == "sessions"
    code, data = _doctor(db, "--fix-sessions", "--yes")
    assert code == 0 and _findings(data, "ownerless_running") == []
    [row] = read_logs(db, sid)
    assert row["status"] == "failed" and row["error_message"].startswith("interrupted")


def test_a_claim_whose_process_is_gone_is_recovered_at_once(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """Killed mid-call, its lease still unexpired: the process is gone (same host, no such
    pid), so the doctor reports it and the next run closes the row without waiting."""
    db = tmp_path / "gone.db"
    gate = threading.Event()
    sid, proc = _step_waiting_on_the_llm(db, fake_llm, gate)
    try:
        proc.kill()
        proc.communicate(timeout=DEADLINE)
    finally:
        gate.set()
    assert session_state(db, sid)["lease_owner"] is not None  # unexpired, owner dead
    code, data = _doctor(db)
    [stuck] = _findings(data, "stuck_sessions")
    assert stuck["object"] == f"session {sid}"
    fake_llm.default = Behaviour()
    result = flowcli(db, "run-next", str(sid), *_llm(fake_llm))
    assert result.exit_code == 0, result.stderr
    first, retry = read_logs(db, sid)
    assert first["status"] == "failed" and first["error_message"].startswith("interrupted")
    assert retry["status"] == "completed" and retry["attempt_count"] == 2
    assert consistency_problems(db, sid, 2) == []


def _mrc_running_row(db: Path, sid: int) -> int:
    """What MRC leaves when it stops mid-step: a running row at the next number, no claim
    (MRC claims nothing) and the count not yet raised."""
    con = sqlite3.connect(db)
    try:
        count, step_id, round_ = con.execute(
            "SELECT executed_steps_count, current_step_id, current_round FROM sessions "
            "WHERE id = ?",
            (sid,),
        ).fetchone()
        cur = con.execute(
            "INSERT INTO step_execution_logs (session_id, step_id, execution_order, "
            "round_index, loop_iteration, attempt_count, status, created_at, started_at) "
            "VALUES (?, ?, ?, ?, 0, 1, 'running', datetime('now'), datetime('now'))",
            (sid, step_id, count + 1, round_),
        )
        con.commit()
        return int(cur.lastrowid or 0)
    finally:
        con.close()


def test_an_mrc_running_row_without_a_claim(mrc_copy: Path, tmp_path: Path) -> None:
    adopted = flowcli(mrc_copy, "db", "doctor", "--fix", "--yes")
    assert adopted.exit_code == 0, adopted.stdout
    sid = create_session(mrc_copy, import_flow(mrc_copy, loop_flow(2)))
    assert flowcli(mrc_copy, "run-next", str(sid)).exit_code == 0
    log_id = _mrc_running_row(mrc_copy, sid)
    _code, data = _doctor(mrc_copy)
    [finding] = _findings(data, "ownerless_running")
    assert finding["severity"] == "warning"
    assert finding["object"] == f"session {sid}"
    assert f"log row(s) {log_id} are running" in finding["detail"]
    # Two copies: the doctor closes it in one, the next auto in the other.
    repaired = tmp_path / "repaired.db"
    shutil.copyfile(mrc_copy, repaired)
    _code, data = _doctor(repaired, "--fix-sessions", "--yes")
    assert _findings(data, "ownerless_running") == []
    closed = next(r for r in read_logs(repaired, sid) if r["id"] == log_id)
    assert closed["status"] == "failed" and closed["error_message"].startswith("interrupted")

    result = flowcli(mrc_copy, "auto", str(sid), "--quiet")
    assert result.exit_code == 0, result.stderr
    rows = read_logs(mrc_copy, sid)
    closed = next(r for r in rows if r["id"] == log_id)
    assert (
        closed["status"] == "failed" and "no process holds this step" in (closed["error_message"])
    )
    assert "running" not in [r["status"] for r in rows]
    assert [r["order"] for r in rows if r["status"] == "completed"] == [1, 2, 1, 2, 1, 2, 3]
    assert session_state(mrc_copy, sid)["status"] == "finished"
    code, data = _doctor(mrc_copy)
    assert _findings(data, "ownerless_running") == []
