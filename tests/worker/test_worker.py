"""`flowcli worker`: several processes drain many sessions, each step exactly once,
and a worker killed mid-run loses nothing (its sessions are picked up after its lease)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env
from tests.flows_fixtures import long_loop_flow
from tests.helpers import import_flow, logs, run_sql, step_orders

BACKENDS = ("sqlite", "postgres")


def make_sessions(cli: Cli, count: int, loops: int, *, start: bool = True) -> list[int]:
    flow_id = import_flow(cli, long_loop_flow(loops, name="worker flow"))
    ids = []
    for _ in range(count):
        sid = cli.json("session", "create", "--flow", str(flow_id))["id"]
        if start:
            cli.ok("session", "start", str(sid))
        ids.append(sid)
    return ids


def spawn_worker(db: Path | str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *flowcli_subprocess_cmd(),
            "--db",
            str(db),
            "--busy-timeout",
            "30",
            "worker",
            "--json",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


def assert_exactly_once(db: Path | str, sid: int, loops: int) -> None:
    rows = logs(db, sid)
    assert [r["execution_order"] for r in rows] == list(range(1, len(rows) + 1))
    completed = [r for r in rows if r["status"] == "completed"]
    assert step_orders(completed) == [1, 2] * (loops + 1) + [3]
    count = run_sql(db, "SELECT count(*) AS n FROM messages WHERE session_id = :s", s=sid)
    assert count[0]["n"] == len(completed)


def test_three_workers_drain_thirty_sessions_one_killed(cli: Cli) -> None:
    loops = 9
    ids = make_sessions(cli, 30, loops)
    common = [
        "--concurrency",
        "2",
        "--lease",
        "2",
        "--poll",
        "0.1",
        "--max-idle",
        "4",
        "--batch",
        "5",
    ]
    workers = [spawn_worker(cli.db, *common) for _ in range(3)]
    # Kill one worker once it is in the middle of things.
    victim = workers[0]
    assert victim.stdout is not None
    steps_seen = 0
    deadline = time.time() + 60
    while steps_seen < 15 and time.time() < deadline:
        line = victim.stdout.readline()
        if not line:
            break
        if json.loads(line).get("event") == "step":
            steps_seen += 1
    victim.kill()
    victim.wait()
    for proc in workers[1:]:
        out, err = proc.communicate(timeout=240)
        errors = [line for line in out.splitlines() if '"event": "error"' in line]
        assert proc.returncode == 0, (err, errors)
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["event"] == "summary" and summary["stop_reason"] == "idle"
    statuses = run_sql(cli.db, "SELECT id, status, lease_owner FROM sessions ORDER BY id")
    assert [s["status"] for s in statuses] == ["finished"] * 30
    assert all(s["lease_owner"] is None for s in statuses)
    for sid in ids:
        assert_exactly_once(cli.db, sid, loops)


def test_not_started_sessions_are_left_alone_and_session_filter(cli: Cli) -> None:
    running = make_sessions(cli, 2, 1)
    waiting = make_sessions(cli, 1, 1, start=False)
    result = cli(
        "worker", "--max-idle", "0.3", "--poll", "0.05", "--session", str(running[0]), "--json"
    )
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["session"] for e in events if e["event"] == "step"} == {running[0]}
    assert events[-1]["event"] == "summary" and events[-1]["sessions_finished"] == [running[0]]
    states = {s["id"]: s["status"] for s in run_sql(cli.db, "SELECT id, status FROM sessions")}
    assert states == {running[0]: "finished", running[1]: "running", waiting[0]: "not_started"}


@pytest.mark.sqlite_only  # the signal handling is the same on both backends
def test_sigterm_finishes_the_step_in_flight_and_exits_cleanly(cli: Cli) -> None:
    make_sessions(cli, 2, 3000)
    proc = spawn_worker(cli.db, "--concurrency", "2")
    assert proc.stdout is not None
    for _ in range(10):
        proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out.strip().splitlines()[-1])["stop_reason"] == "stopped"
    sessions = run_sql(cli.db, "SELECT id, lease_owner FROM sessions")
    assert all(s["lease_owner"] is None for s in sessions)  # claims released
    for s in sessions:
        rows = logs(cli.db, s["id"])
        assert [r["execution_order"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(r["status"] == "completed" for r in rows)
