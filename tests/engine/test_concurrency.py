"""Several processes on one session, kills, Ctrl-C and abandoned claims: each step once."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env
from tests.flows_fixtures import long_loop_flow
from tests.helpers import logs, messages, new_session, session_row, step_orders
from tests.llm_server import Behaviour
from tests.waiting import wait_until


def long_loop(loops: int, max_steps: int | None = None) -> str:
    return long_loop_flow(loops, name=f"long loop {loops}", max_steps=max_steps)


BACKENDS = ("sqlite", "postgres")


def spawn(db: Path | str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*flowcli_subprocess_cmd(), "--db", str(db), "--busy-timeout", "30", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


DEADLINE = 120.0  # seconds to wait for a condition: generous, for a busy 2-core machine


def completed_steps(db: Path | str, session_id: int) -> int:
    return len([r for r in logs(db, session_id) if r["status"] == "completed"])


def wait_for_steps(
    db: Path | str, session_id: int, at_least: int, proc: subprocess.Popen[str]
) -> None:
    """Wait until ``at_least`` steps of the session are committed (polling the database).

    A condition instead of a fixed sleep: on a loaded machine Python's start-up alone can
    take longer than any fixed delay, and a signal sent then lands in start-up.
    """
    wait_until(
        lambda: completed_steps(db, session_id) >= at_least,
        f"{at_least} committed steps",
        proc=proc,
        deadline_s=DEADLINE,
    )


def assert_consistent(db: Path | str, session_id: int) -> list[dict]:
    if isinstance(db, Path):
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()
    rows = logs(db, session_id)
    orders = [r["execution_order"] for r in rows]
    assert orders == list(range(1, len(rows) + 1)), "gap or duplicate in execution_order"
    completed = [r for r in rows if r["status"] == "completed"]
    assert len(messages(db, session_id)) == len(completed)
    assert not [r for r in rows if r["status"] == "running"]
    return rows


def test_concurrent_drivers_run_each_step_once(cli: Cli) -> None:
    loops = 100
    sid = new_session(cli, long_loop(loops))
    procs = [
        spawn(cli.db, "auto", str(sid), "--quiet")
        if i % 2 == 0
        else spawn(cli.db, "run-next", str(sid))
        for i in range(6)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        # A loser either ran its steps or says clearly why it did not.
        assert proc.returncode == 0 or err.startswith("Error: "), err
        assert "Traceback" not in err
    # Whoever is left finishes the session.
    if session_row(cli.db, sid)["status"] != "finished":
        cli.ok("auto", str(sid), "--quiet")
    rows = assert_consistent(cli.db, sid)
    expected = [1, 2] * (loops + 1) + [3]
    assert step_orders(rows) == expected
    assert [r["status"] for r in rows] == ["completed"] * len(expected)
    row = session_row(cli.db, sid)
    assert row["executed_steps_count"] == len(expected) and row["status"] == "finished"


def test_kill_during_auto_then_resume(cli: Cli) -> None:
    # Enough steps that the kills land mid-run (a PostgreSQL step costs several times more).
    loops = 3000 if cli.backend == "sqlite" else 600
    sid = new_session(
        cli,
        long_loop(loops, max_steps=100000),
    )
    rng = random.Random(7)
    for _ in range(4):
        proc = spawn(cli.db, "auto", str(sid), "--quiet")
        # Kill once it is writing steps, after a random number of them: mid-run.
        wait_for_steps(cli.db, sid, completed_steps(cli.db, sid) + rng.randint(1, 40), proc)
        proc.kill()
        proc.wait()
        assert_consistent(cli.db, sid)
        if session_row(cli.db, sid)["status"] == "finished":
            break
    if session_row(cli.db, sid)["status"] != "finished":
        cli.ok("auto", str(sid), "--quiet")
    rows = assert_consistent(cli.db, sid)
    # Same number of completed executions as an uninterrupted run of the same flow.
    assert len([r for r in rows if r["status"] == "completed"]) == 2 * (loops + 1) + 1
    assert step_orders(rows) == [1, 2] * (loops + 1) + [3]


def test_ctrl_c_stops_after_a_step_and_resumes(cli: Cli) -> None:
    loops = 5000 if cli.backend == "sqlite" else 800
    sid = new_session(
        cli,
        long_loop(loops, max_steps=100000),
    )
    proc = spawn(cli.db, "auto", str(sid), "--quiet")
    # Ctrl-C once steps are being written (not during Python's start-up, which a loaded
    # machine can stretch past any fixed delay).
    wait_for_steps(cli.db, sid, 3, proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    done = len(assert_consistent(cli.db, sid))
    assert done >= 3
    assert session_row(cli.db, sid)["status"] == "running"
    cli.ok("auto", str(sid), "--quiet")
    rows = assert_consistent(cli.db, sid)
    assert len(rows) == 2 * (loops + 1) + 1 and len(rows) >= done


def _llm_args(fake_llm, timeout: str = "20") -> list[str]:
    return [
        "--responder",
        "openai",
        "--llm-base-url",
        fake_llm.base_url,
        "--llm-model",
        "m",
        "--llm-timeout",
        timeout,
        "--llm-retries",
        "0",
        "--retry-backoff",
        "0.01",
    ]


def test_claimed_step_makes_others_wait_then_abandoned_claim_is_recovered(
    cli: Cli, fake_llm
) -> None:
    sid = new_session(cli, long_loop(1))
    fake_llm.then(Behaviour(kind="slow", delay=30))
    proc = spawn(cli.db, "run-next", str(sid), *_llm_args(fake_llm))
    wait_until(lambda: bool(session_row(cli.db, sid)["lease_owner"]), "the claim", proc=proc)
    assert session_row(cli.db, sid)["lease_owner"], "the step was never claimed"
    # The claim is committed: a running log exists and the database is not locked.
    assert [r["status"] for r in logs(cli.db, sid)] == ["running"]
    busy = cli("run-next", str(sid), *_llm_args(fake_llm))
    assert busy.exit_code == 1 and "is busy" in busy.stderr
    # Kill it while the LLM call is in flight.
    wait_until(lambda: bool(fake_llm.requests), "the LLM call", proc=proc)
    assert len(fake_llm.requests) == 1
    proc.kill()
    proc.wait()
    # Time passes: the dead process's lease expires.
    cli.sql("UPDATE sessions SET lease_expires_at = '2000-01-01 00:00:00' WHERE id = :id", id=sid)
    data = cli.json("run-next", str(sid), *_llm_args(fake_llm))
    rows = logs(cli.db, sid)
    assert [r["status"] for r in rows] == ["failed", "completed"], [
        r["error_message"] for r in rows
    ]
    assert "interrupted" in rows[0]["error_message"]
    assert [r["attempt_count"] for r in rows] == [1, 2]
    # Every logged execution counts, the interrupted attempt too (docs/engine.md).
    assert data["session"]["executed_steps_count"] == 2
    assert session_row(cli.db, sid)["lease_owner"] is None


def test_no_write_lock_held_during_llm_call(cli: Cli, fake_llm) -> None:
    sid = new_session(cli, long_loop(1))
    other = new_session(cli, long_loop(2))
    fake_llm.then(Behaviour(kind="slow", delay=3))
    proc = spawn(cli.db, "run-next", str(sid), *_llm_args(fake_llm))
    wait_until(lambda: bool(session_row(cli.db, sid)["lease_owner"]), "the claim", proc=proc)
    # While the LLM is thinking, another session's steps write freely.
    from flowcli.cli.app import app

    # With a 0.5 s busy timeout it would fail "locked" if the 3 s LLM call held the lock.
    result = cli.runner.invoke(
        app, ["--db", str(cli.db), "--busy-timeout", "0.5", "run-next", str(other)]
    )
    assert result.exit_code == 0, result.stderr
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [r["status"] for r in logs(cli.db, sid)] == ["completed"]
