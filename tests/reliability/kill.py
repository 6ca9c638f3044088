"""kill -9 trials: start ``flowcli auto``, SIGKILL it at a random moment, check the file.

Shared by the short CI run (tests/reliability/test_kill.py) and the long run
(scripts/kill_trials.py, whose tally is in RELIABILITY.md). Nothing here needs pytest.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flowcli.cli.app import app
from tests.flows_fixtures import expected_orders, long_loop_flow
from tests.waiting import wait_until

CLI_ENV = {"COLUMNS": "200", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1"}


def loop_flow(loops: int, name: str | None = None) -> str:
    """The long loop, with room for many steps: 2 * (loops + 1) + 1 executions,
    deterministic, each writing one message (expected_orders(loops))."""
    return long_loop_flow(loops, name=name or f"loop {loops}", max_steps=100_000)


def flowcli(db: Path, *args: str) -> Any:
    """Run one flowcli command in this process (CliRunner); returns the Result."""
    argv = ["--db", str(db), *[str(a) for a in args]]
    return CliRunner().invoke(app, argv, env=CLI_ENV)


def flowcli_json(db: Path, *args: str) -> Any:
    result = flowcli(db, *args, "--json")
    if result.exit_code != 0:
        raise RuntimeError(f"flowcli {' '.join(args)} failed: {result.stderr}")
    return json.loads(result.stdout)


def import_flow(db: Path, yaml_text: str) -> int:
    path = db.parent / f"flow-{abs(hash(yaml_text))}.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    return int(flowcli_json(db, "flow", "import", str(path))["id"])


def create_session(db: Path, flow_id: int) -> int:
    return int(flowcli_json(db, "session", "create", "--flow", str(flow_id))["id"])


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CLI_ENV)
    env.pop("FLOWCLI_DB", None)
    return env


def spawn(db: Path, *args: str, busy_timeout: float = 30.0, **popen: Any) -> subprocess.Popen:
    """``python -m flowcli --db DB ARGS…`` as a real process."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-m", "flowcli", "--db", str(db), "--busy-timeout", str(busy_timeout)]
        + [str(a) for a in args],
        text=True,
        env=popen.pop("env", subprocess_env()),
        **popen,
    )


# --- what "consistent" means --------------------------------------------------------------


def read_logs(db: Path, session_id: int) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        rows = [
            dict(r)
            for r in con.execute(
                "SELECT id, execution_order, status, attempt_count, error_message, step_snapshot "
                "FROM step_execution_logs WHERE session_id = ? ORDER BY execution_order, id",
                (session_id,),
            )
        ]
    finally:
        con.close()
    for row in rows:
        row["order"] = json.loads(row.pop("step_snapshot") or "{}").get("order")
    return rows


def session_state(db: Path, session_id: int) -> dict[str, Any]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone())
    finally:
        con.close()


def consistency_problems(
    db: Path, session_id: int, loops: int, *, claim_allowed: bool = False
) -> list[str]:
    """Every way the file could break flowcli's promise, as sentences; [] when it holds.

    integrity_check ok; execution_order 1..n without gap or duplicate; one message per
    completed execution; executed_steps_count = the number of log rows (every execution
    logged counts, failed attempts and a claim included: MRC numbers its next row
    executed_steps_count + 1, so that number must be free); completed executions
    follow the deterministic sequence; nothing stuck (no ``running`` row, no lease),
    except, with ``claim_allowed``, one claim of a network step: its ``running`` row is
    the last one and the session holds its lease.
    """
    problems: list[str] = []
    con = sqlite3.connect(db)
    try:
        check = [r[0] for r in con.execute("PRAGMA integrity_check")]
        if check != ["ok"]:
            problems.append(f"integrity_check: {check[:3]}")
            return problems
        n_messages = con.execute(
            "SELECT count(*) FROM messages WHERE session_id = ?", (session_id,)
        ).fetchone()[0]
    finally:
        con.close()
    rows = read_logs(db, session_id)
    orders = [r["execution_order"] for r in rows]
    if orders != list(range(1, len(rows) + 1)):
        problems.append(f"execution_order has a gap or a duplicate: {orders[-10:]}")
    completed = [r for r in rows if r["status"] == "completed"]
    if n_messages != len(completed):
        problems.append(f"{n_messages} messages but {len(completed)} completed executions")
    session = session_state(db, session_id)
    if session["executed_steps_count"] != len(rows):
        problems.append(
            f"executed_steps_count {session['executed_steps_count']} != "
            f"{len(rows)} log rows (a lost update, or a number MRC would reuse)"
        )
    want = expected_orders(loops)
    got = [r["order"] for r in completed]
    if got != want[: len(got)]:
        problems.append(f"completed step orders diverge from the deterministic run: {got[-10:]}")
    running = [r for r in rows if r["status"] == "running"]
    if running:
        if not claim_allowed:
            problems.append(f"{len(running)} running log row(s) with no process alive")
        elif len(running) > 1 or running[0] is not rows[-1] or not session["lease_owner"]:
            problems.append("a running log row that is not the session's one live claim")
    elif session["lease_owner"] and not claim_allowed:
        problems.append(f"a lease held by a dead process: {session['lease_owner']}")
    if session["status"] not in ("not_started", "running", "finished"):
        problems.append(f"session is {session['status']}: {session['error_reason']}")
    if session["status"] == "finished" and got != want:
        problems.append("finished, but not with the deterministic sequence")
    return problems


# --- the trials ---------------------------------------------------------------------------


@dataclass
class Tally:
    trials: int = 0
    kills_before_first_step: int = 0  # the process died before it committed a step
    kills_mid_run: int = 0  # the process had committed steps when it died
    sessions: int = 0
    sessions_finished: int = 0
    steps_completed: int = 0
    inconsistencies: int = 0
    startup_s: float = 0.0  # measured time from spawn to the first committed step
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "problems"}
        data["problems"] = self.problems[:20]
        data["machine"] = machine()
        return data


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPU(s) {cpu}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def completed_count(db: Path, session_id: int) -> int:
    con = sqlite3.connect(db)
    try:
        return int(
            con.execute(
                "SELECT count(*) FROM step_execution_logs WHERE session_id = ? "
                "AND status = 'completed'",
                (session_id,),
            ).fetchone()[0]
        )
    finally:
        con.close()


def time_to_first_step(db: Path, flow_id: int) -> tuple[float, int]:
    """Seconds from spawning ``flowcli auto`` to its first committed step (then killed).

    Kill times are drawn around it, so some kills land in start-up and most after the
    first step, however fast or slow this machine starts Python.
    """
    sid = create_session(db, flow_id)
    t0 = time.perf_counter()
    proc = spawn(db, "auto", str(sid), "--quiet")
    try:
        wait_until(
            lambda: completed_count(db, sid) > 0, "the first step", proc=proc, stop_if_exited=True
        )
        return time.perf_counter() - t0, sid
    finally:
        proc.kill()
        proc.communicate()


def run_kill_trials(
    db: Path,
    trials: int,
    *,
    loops: int,
    seed: int,
    min_delay: float = 0.05,
    after_start: float = 0.4,
    progress: Callable[[Tally], None] | None = None,
    on_conditions: bool = False,
) -> tuple[Tally, list[int]]:
    """SIGKILL ``flowcli auto`` ``trials`` times at random moments, checking after each kill.

    Odd trials kill during start-up (``min_delay`` … start-up time after the spawn), even
    ones while steps are being written (start-up … start-up + ``after_start``), so both
    kinds always occur. A session that finishes is replaced by a new one of the same
    flow. Returns the tally and the ids of every session used (each resumed to its end
    by the caller).

    ``on_conditions`` (the CI test): no delays drawn from a measured start-up time, which
    a machine whose load changes can make land all in start-up or all mid-run. Odd trials
    kill at once (in start-up); even ones once 1 to 50 more steps are committed.
    """
    rng = random.Random(seed)
    t0 = time.perf_counter()
    tally = Tally()
    flow_id = import_flow(db, loop_flow(loops, f"kill trials {loops}"))
    tally.startup_s, sid = time_to_first_step(db, flow_id)
    sessions = [sid]
    tally.sessions = 1
    startup = tally.startup_s
    for trial in range(trials):
        if session_state(db, sid)["status"] == "finished":
            tally.sessions_finished += 1
            sid = create_session(db, flow_id)
            sessions.append(sid)
            tally.sessions += 1
        before = completed_count(db, sid)
        proc = spawn(db, "auto", str(sid), "--quiet")
        if on_conditions:
            if trial % 2 == 1:
                target = before + rng.randint(1, 50)
                wait_until(
                    lambda t=target, s=sid: completed_count(db, s) >= t,
                    "auto's next steps",
                    proc=proc,
                    stop_if_exited=True,
                )
        elif trial % 2 == 0:
            time.sleep(rng.uniform(min_delay, startup))
        else:
            time.sleep(rng.uniform(startup, startup + after_start))
        proc.kill()
        proc.communicate()
        tally.trials += 1
        problems = consistency_problems(db, sid, loops)
        after = completed_count(db, sid)
        tally.steps_completed += after - before
        if after == before:
            tally.kills_before_first_step += 1
        else:
            tally.kills_mid_run += 1
        if problems:
            tally.inconsistencies += 1
            tally.problems.extend(f"trial {tally.trials}, session {sid}: {p}" for p in problems)
        if progress is not None:
            progress(tally)
    tally.elapsed_s = round(time.perf_counter() - t0, 1)
    return tally, sessions


def finish_and_compare(db: Path, sessions: list[int], loops: int) -> list[str]:
    """Resume every killed session to its end and compare it with an uninterrupted run."""
    problems: list[str] = []
    flow_id = int(session_state(db, sessions[0])["flow_template_id"])
    baseline = create_session(db, flow_id)
    result = flowcli(db, "auto", str(baseline), "--quiet")
    if result.exit_code != 0:
        return [f"the uninterrupted run failed: {result.stderr}"]
    want = [r["order"] for r in read_logs(db, baseline) if r["status"] == "completed"]
    for sid in sessions:
        if session_state(db, sid)["status"] != "finished":
            result = flowcli(db, "auto", str(sid), "--quiet")
            if result.exit_code != 0:
                problems.append(f"session {sid} did not resume: {result.stderr.strip()}")
                continue
        problems.extend(f"session {sid}: {p}" for p in consistency_problems(db, sid, loops))
        got = [r["order"] for r in read_logs(db, sid) if r["status"] == "completed"]
        if got != want:
            problems.append(
                f"session {sid}: {len(got)} completed executions, the uninterrupted run "
                f"{len(want)} (or a different sequence)"
            )
    return problems
