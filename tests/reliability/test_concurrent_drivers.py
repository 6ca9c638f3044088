"""Eight processes drive one session at once: every step runs exactly once.

Four processes loop on ``run-next`` and four run ``auto`` on the same session (template
responder: losers queue on the write lock), then the same race with the openai responder
(a step is claimed while the LLM answers: losers are told the session "is busy").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.llm_server import Behaviour, FakeLLM
from tests.reliability.kill import (
    consistency_problems,
    create_session,
    expected_orders,
    flowcli,
    import_flow,
    loop_flow,
    read_logs,
    session_state,
    spawn,
    subprocess_env,
)


def _driver(db: Path, sid: int, *extra: str) -> subprocess.Popen[str]:
    env = subprocess_env()
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.driver", str(db), str(sid), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


def _race(db: Path, sid: int, *extra: str) -> tuple[list[dict], list[tuple[int, str, str]]]:
    drivers = [_driver(db, sid, *extra) for _ in range(4)]
    # The autos wait for the lock with flowcli's default --busy-timeout (5 s), as a user's
    # would: each step holds the lock for milliseconds, so none may give up "locked".
    autos = [
        spawn(db, "auto", str(sid), "--json", *extra, busy_timeout=5.0, stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    reports = []
    for proc in drivers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Traceback" not in err, err
        reports.append(json.loads(out))
    auto_results = []
    for proc in autos:
        out, err = proc.communicate(timeout=300)
        auto_results.append((proc.returncode, out, err))
    return reports, auto_results


def _assert_exactly_once(db: Path, sid: int, loops: int) -> list[dict]:
    assert consistency_problems(db, sid, loops) == []
    rows = read_logs(db, sid)
    # No duplicate execution_order and no step twice: the sequence is the deterministic one.
    assert [r["order"] for r in rows if r["status"] == "completed"] == expected_orders(loops)
    row = session_state(db, sid)
    assert row["status"] == "finished"
    # Every execution logged counts (docs/engine.md): MRC's next number is free.
    assert row["executed_steps_count"] == len(rows)
    return rows


def test_eight_drivers_template_responder(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    loops = 150
    sid = create_session(db, import_flow(db, loop_flow(loops)))
    reports, autos = _race(db, sid)
    for report in reports:
        assert report["other"] == [], report["other"]
        # Lock waits degrade gracefully: no driver gives up "locked … past the busy timeout".
        assert not [err for err in report["busy"] if "locked" in err], report["busy"]
    auto_steps = 0
    for code, out, err in autos:
        # A loser waits for the lock (then finds the session finished) or says why in a line.
        assert code == 0 or (err.startswith("Error: ") and err.count("\n") == 1), err
        assert "locked" not in err, err
        if code == 0:
            auto_steps += json.loads(out)["steps_run"]
    rows = _assert_exactly_once(db, sid, loops)
    assert all(r["status"] == "completed" for r in rows)
    # Every process's own count adds up to the steps in the log: none ran one twice.
    if all(code == 0 for code, _out, _err in autos):
        assert sum(r["ran"] for r in reports) + auto_steps == len(expected_orders(loops))


def test_eight_drivers_openai_responder_losers_are_told_busy(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    db = tmp_path / "race-llm.db"
    loops = 12
    sid = create_session(db, import_flow(db, loop_flow(loops)))
    fake_llm.default = Behaviour(kind="slow", delay=0.05)
    llm = [
        "--responder",
        "openai",
        "--llm-base-url",
        fake_llm.base_url,
        "--llm-model",
        "m",
        "--llm-retries",
        "0",
        "--retry-backoff",
        "0.01",
    ]
    reports, autos = _race(db, sid, *llm)
    for report in reports:
        assert report["other"] == [], report["other"]
        for err in report["busy"]:
            assert err.startswith("Error: ") and err.count("\n") == 1, err
    busy_seen = sum(len(r["busy"]) for r in reports)
    for code, _out, err in autos:
        assert code == 0 or (err.startswith("Error: ") and err.count("\n") == 1), err
        assert "Traceback" not in err
        if code != 0:
            assert "is busy" in err or "changed by another process" in err, err
            busy_seen += 1
    assert busy_seen > 0, "eight processes on one LLM-backed session: somebody must have waited"
    if session_state(db, sid)["status"] != "finished":
        result = flowcli(db, "auto", str(sid), "--quiet", *llm)
        assert result.exit_code == 0, result.stderr
    rows = _assert_exactly_once(db, sid, loops)
    # One LLM call per executed step: no step was sent twice.
    assert len(fake_llm.requests) == len(rows)


def test_eight_drivers_on_an_adopted_mrc_copy(mrc_copy: Path, fake_llm: FakeLLM) -> None:
    """MRC's database has no unique (session_id, execution_order) index and keeps its
    rollback journal: exactly-once rests on the version-checked session update alone."""
    import sqlite3

    adopted = flowcli(mrc_copy, "db", "doctor", "--fix", "--yes")
    assert adopted.exit_code == 0, adopted.stdout
    con = sqlite3.connect(mrc_copy)
    try:
        unique = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' "
            "AND name = 'ux_step_logs_session_order'"
        ).fetchall()
        assert unique == []
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        con.close()
    loops = 12
    sid = create_session(mrc_copy, import_flow(mrc_copy, loop_flow(loops)))
    fake_llm.default = Behaviour(kind="slow", delay=0.05)
    llm = ["--responder", "openai", "--llm-base-url", fake_llm.base_url, "--llm-model", "m"]
    reports, autos = _race(mrc_copy, sid, *llm, "--llm-retries", "0", "--retry-backoff", "0.01")
    for report in reports:
        assert report["other"] == [], report["other"]
    for code, _out, err in autos:
        assert code == 0 or (err.startswith("Error: ") and err.count("\n") == 1), err
    if session_state(mrc_copy, sid)["status"] != "finished":
        result = flowcli(mrc_copy, "auto", str(sid), "--quiet", *llm)
        assert result.exit_code == 0, result.stderr
    rows = _assert_exactly_once(mrc_copy, sid, loops)
    assert len(fake_llm.requests) == len(rows)
    assert sqlite3.connect(mrc_copy).execute("PRAGMA journal_mode").fetchone() == ("delete",)
