"""kill -9 during a batch, then `batch resume`: every session handled exactly once.

Three shapes of action: one that writes the session (skip: the action and its outcome
share a transaction), one that runs a step over the network (retry: killed while the LLM
is still answering), and one that drives sessions to their end through the worker (auto).
Kills wait on conditions (rows committed, requests received), never on the clock.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowcli.db.connection import Database, resolve_target
from flowcli.engine.lifecycle import create_session
from tests.llm_server import Behaviour, FakeLLM
from tests.reliability.kill import (
    consistency_problems,
    expected_orders,
    flowcli,
    flowcli_json,
    import_flow,
    loop_flow,
    read_logs,
    spawn,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DEADLINE_S = 180.0

FLOW = """
roles:
  A: {prompt: "You are A."}
  B: {prompt: "You are B."}
name: kill
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - {speaker_role_ref: B, target_role_ref: A, task_type: answer_question, context_scope: all}
"""


def scalar(db: Path, sql: str, *args: Any) -> Any:
    con = sqlite3.connect(db, timeout=60)
    try:
        return con.execute(sql, args).fetchone()[0]
    finally:
        con.close()


def handled(db: Path) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM flowcli_batch_items "
            "WHERE outcome NOT IN ('pending', 'started', 'busy')",
        )
    )


def many_sessions(db: Path, flow_yaml: str, n: int) -> list[int]:
    flow_id = import_flow(db, flow_yaml)
    database = Database(resolve_target(str(db)))
    try:
        return [create_session(database, flow_id, topic=f"s{i}") for i in range(n)]
    finally:
        database.dispose()


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def outcomes(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return dict(
            con.execute("SELECT outcome, count(*) FROM flowcli_batch_items GROUP BY outcome")
        )
    finally:
        con.close()


def test_kill_9_during_a_skip_batch_then_resume_skips_each_session_once(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    # Enough sessions that the batch is still running when the test sees its third item,
    # however the machine schedules the two processes (300 were done in one poll's time).
    total = 1500
    ids = many_sessions(db, FLOW, total)
    proc = spawn(db, "session", "skip", "--where", "True", "--reason", "k", "--yes")
    wait_until(
        lambda: handled(db) >= 3 or proc.poll() is not None, "items handled", deadline_s=DEADLINE_S
    )
    # The first kill is checked to land midway: the process is frozen (wherever it is,
    # inside a transaction or not), what it committed is counted, then it is killed.
    os.kill(proc.pid, signal.SIGSTOP)
    at_kill = handled(db)
    proc.kill()
    proc.wait()
    assert proc.returncode == -9 and 3 <= at_kill < total
    # Later kills land wherever the resumed batch is, inside a transaction or not.
    rng = random.Random(19)
    for _ in range(3):
        target = handled(db) + rng.randint(1, 40)
        resumed = spawn(db, "batch", "resume", "1", "--quiet")
        wait_until(
            lambda p=resumed, t=target: handled(db) >= t or p.poll() is not None,
            "items handled",
            deadline_s=DEADLINE_S,
        )
        resumed.kill()
        resumed.wait()
    result = flowcli(db, "batch", "resume", "1", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert outcomes(db) == {"done": total}
    # Each session holds exactly one log row, a skip: none twice, none missed.
    per_session = dict(
        _rows(db, "SELECT session_id, group_concat(status) FROM step_execution_logs GROUP BY 1")
    )
    assert per_session == {sid: "skipped" for sid in ids}
    assert scalar(db, "SELECT count(*) FROM flowcli_batches") == 1
    assert scalar(db, "SELECT status FROM flowcli_batches") == "done"


def test_kill_9_while_a_retry_waits_for_the_llm_then_resume_retries_each_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "retry.db"
    fake = FakeLLM().start()
    try:
        llm = [
            "--responder",
            "openai",
            "--llm-base-url",
            fake.base_url,
            "--llm-model",
            "m",
            "--llm-timeout",
            "300",
            "--llm-retries",
            "0",
            "--retries",
            "0",
        ]
        ids = many_sessions(db, FLOW, 4)
        fake.default = Behaviour(kind="status", status=503)
        for sid in ids:
            assert flowcli(db, "auto", str(sid), *llm, "--quiet").exit_code == 1
        fake.requests.clear()
        # the first retry is answered; the second is held while the batch waits on it
        fake.default = Behaviour()
        fake.then(Behaviour(), Behaviour(kind="slow", delay=600))
        proc = spawn(db, "session", "retry", "--where", "status == 'failed'", "--yes", *llm)
        wait_until(
            lambda: len(fake.requests) >= 2 or proc.poll() is not None,
            "the held call",
            deadline_s=DEADLINE_S,
        )
        assert proc.poll() is None, proc.communicate()
        proc.kill()
        proc.wait()
        held = ids[1]
        assert [r["status"] for r in read_logs(db, held)] == ["failed", "running"]
        # The dead process's claim on the step is still live; resuming on this host sees
        # its process is gone and ends the claim: the engine records the interrupted
        # attempt and runs the step again.
        assert scalar(db, "SELECT lease_owner FROM sessions WHERE id = ?", held)
        result = flowcli(db, "batch", "resume", "1", *llm[:6], "--quiet")
        assert result.exit_code == 0, result.stderr
    finally:
        fake.stop()
    assert outcomes(db) == {"done": 4}
    # one completed retry per session: the answered one, the held one run again, the rest
    assert len(fake.requests) == 2 + 3
    for sid in ids:
        statuses = [r["status"] for r in read_logs(db, sid)]
        want = ["failed", "failed", "completed"] if sid == held else ["failed", "completed"]
        assert statuses == want, (sid, statuses)
    interrupted = read_logs(db, held)[1]["error_message"]
    assert interrupted.startswith("interrupted")
    details = flowcli_json(db, "batch", "show", "1")["items"]
    assert [d["detail"] for d in details] == [
        "execution #2 completed",
        "execution #3 completed",
        "execution #2 completed",
        "execution #2 completed",
    ]


def test_kill_9_during_an_auto_batch_then_resume_runs_each_step_once(tmp_path: Path) -> None:
    db = tmp_path / "auto.db"
    loops = 40
    ids = many_sessions(db, loop_flow(loops), 6)
    steps = len(expected_orders(loops))

    def completed() -> int:
        return int(
            scalar(db, "SELECT count(*) FROM step_execution_logs WHERE status = 'completed'")
        )

    proc = spawn(db, "auto", "--where", "True", "--concurrency", "2", "--yes", "--quiet")
    wait_until(
        lambda: completed() >= 60 or proc.poll() is not None,
        "steps committed",
        deadline_s=DEADLINE_S,
    )
    proc.kill()
    proc.wait()
    assert proc.returncode == -9
    assert completed() < steps * len(ids)  # killed midway
    result = flowcli(db, "batch", "resume", "1", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert outcomes(db) == {"done": len(ids)}
    for sid in ids:
        assert consistency_problems(db, sid, loops) == []
        rows = read_logs(db, sid)
        assert [r["order"] for r in rows if r["status"] == "completed"] == expected_orders(loops)
        assert scalar(db, "SELECT status FROM sessions WHERE id = ?", sid) == "finished"
