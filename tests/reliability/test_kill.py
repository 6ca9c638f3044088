"""kill -9 during ``auto``: after every kill the history is whole, and the session resumes.

The short CI run of scripts/kill_trials.py (which runs 500 and more), plus kills of the
openai responder while a step is claimed and the LLM is still thinking.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from tests.llm_server import Behaviour, FakeLLM
from tests.reliability.kill import (
    completed_count,
    consistency_problems,
    create_session,
    finish_and_compare,
    flowcli,
    import_flow,
    loop_flow,
    read_logs,
    run_kill_trials,
    session_state,
    spawn,
)
from tests.waiting import wait_until


def test_kill_9_during_auto_at_random_moments(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    # Kill moments chosen by conditions (steps committed), not by delays: a busy machine
    # cannot push them all into start-up.
    tally, sessions = run_kill_trials(db, 30, loops=300, seed=2024, on_conditions=True)
    assert tally.problems == []
    assert tally.trials == 30 and tally.inconsistencies == 0
    # Kills landed both in start-up and while steps were being written.
    assert tally.kills_before_first_step > 0 and tally.kills_mid_run > 0, tally.summary()
    # Every killed session resumes to exactly what an uninterrupted run executes.
    assert finish_and_compare(db, sessions, 300) == []


def _expire_lease(db: Path, sid: int) -> None:
    con = sqlite3.connect(db)
    con.execute("UPDATE sessions SET lease_expires_at = '2000-01-01 00:00:00' WHERE id = ?", (sid,))
    con.commit()
    con.close()


def _llm(fake: FakeLLM) -> list[str]:
    return [
        "--responder",
        "openai",
        "--llm-base-url",
        fake.base_url,
        "--llm-model",
        "m",
        "--llm-timeout",
        "20",
        "--llm-retries",
        "0",
        "--retry-backoff",
        "0.01",
    ]


def test_kill_9_while_a_claimed_llm_step_is_in_flight(tmp_path: Path, fake_llm: FakeLLM) -> None:
    db = tmp_path / "claims.db"
    loops = 6
    sid = create_session(db, import_flow(db, loop_flow(loops)))
    fake_llm.default = Behaviour(kind="slow", delay=0.3)
    rng = random.Random(11)
    recovered = 0
    for trial in range(6):
        before = len(fake_llm.requests)
        done = completed_count(db, sid)
        proc = spawn(db, "auto", str(sid), "--quiet", *_llm(fake_llm))
        # Kill once a condition holds (never after a fixed delay, which a busy machine can
        # stretch into start-up or past the moment aimed at).
        if trial % 2 == 0:
            # While the LLM is answering its k-th request: the claim is committed, the
            # step is not.
            asked = before + rng.randint(1, 2)
            wait_until(
                lambda: len(fake_llm.requests) >= asked,  # noqa: B023
                "the k-th LLM request",
                proc=proc,
                stop_if_exited=True,
            )
        else:
            # In start-up (k = 0) or after k committed steps.
            steps = done + rng.randint(0, 2)
            wait_until(
                lambda: completed_count(db, sid) >= steps,  # noqa: B023
                "k committed steps",
                proc=proc,
                stop_if_exited=True,
            )
        proc.kill()
        proc.communicate()
        assert consistency_problems(db, sid, loops, claim_allowed=True) == []
        row = session_state(db, sid)
        if row["lease_owner"] is None:
            continue
        claim = read_logs(db, sid)[-1]
        assert claim["status"] == "running"
        # The claim's process is gone (same host, no such pid), so its unexpired lease
        # holds no one up: the next run marks the interrupted attempt failed and runs the
        # step again at once. (A live process's claim makes others "busy": test_llm_failures.)
        if trial % 4 == 2:
            _expire_lease(db, sid)  # and an expired lease, whoever held it, is recovered too
        result = flowcli(db, "run-next", str(sid), *_llm(fake_llm))
        assert result.exit_code == 0, result.stderr
        rows = read_logs(db, sid)
        failed = next(r for r in rows if r["id"] == claim["id"])
        assert failed["status"] == "failed" and "interrupted" in failed["error_message"]
        retry = rows[rows.index(failed) + 1]
        assert retry["status"] == "completed" and retry["order"] == failed["order"]
        assert retry["attempt_count"] == failed["attempt_count"] + 1
        assert consistency_problems(db, sid, loops) == []
        recovered += 1
    assert recovered >= 3  # every even trial killed a process holding a claim
    fake_llm.default = Behaviour()
    if session_state(db, sid)["status"] != "finished":
        result = flowcli(db, "auto", str(sid), "--quiet", *_llm(fake_llm))
        assert result.exit_code == 0, result.stderr
    assert consistency_problems(db, sid, loops) == []
    rows = read_logs(db, sid)
    assert [r["order"] for r in rows if r["status"] == "completed"] == [1, 2] * (loops + 1) + [3]
    assert all("interrupted" in r["error_message"] for r in rows if r["status"] == "failed")
    assert completed_count(db, sid) == 2 * (loops + 1) + 1
