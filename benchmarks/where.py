"""How long does `flowcli session count --where …` take over 100,000 sessions?

Builds a temporary SQLite database with flowcli's schema holding --sessions sessions (70%
finished, 15% failed, 10% running, 5% cancelled, over 60 days; one execution each, plus
a failed one, half of them timeouts, for the failed sessions) and times, as whole
processes (median of --runs):

- the two selectors of docs/batch.md, which SQL answers entirely;
- `session count` without --where (flowcli's start-up and a plain count(*));
- the same counts by the `sqlite3` command-line shell with hand-written SQL (the
  baseline: the least a process can do to answer them);
- for information, a selector SQL narrows and the sandbox finishes, and one only the
  sandbox can answer (every session through it).

It prints each time, its ratio to the sqlite3 baseline of the same question, and checks
that flowcli's counts equal the baseline's.

    python benchmarks/where.py                   # 100,000 sessions, 5 runs each
    python benchmarks/where.py --sessions 2000 --runs 1   # a quick run (CI smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

NOW = datetime.now().replace(microsecond=0)  # ago() counts back from the real clock (UTC-ish)
FMT = "%Y-%m-%d %H:%M:%S.%f"

TIMEOUT_WHERE = "status == 'failed' and 'timeout' in last_error"
AGE_WHERE = "flow == 'Demo' and ended_at < ago('7d')"
NARROWED_WHERE = "status == 'failed' and len(error_reason or '') > 30"
SANDBOX_WHERE = "vars.get('tier') == 'gold'"

BASELINE_SQL = {
    TIMEOUT_WHERE: (
        "SELECT count(*) FROM sessions s WHERE s.status = 'failed' AND instr(("
        "SELECT l.error_message FROM step_execution_logs l WHERE l.session_id = s.id "
        "AND l.status IN ('failed', 'timeout') ORDER BY l.execution_order DESC LIMIT 1"
        "), 'timeout') > 0"
    ),
    AGE_WHERE: (
        "SELECT count(*) FROM sessions s JOIN flow_templates f ON f.id = s.flow_template_id "
        "WHERE f.name = 'Demo' AND s.ended_at < '{cutoff}'"
    ),
    "": "SELECT count(*) FROM sessions",
}


def build(path: Path, n: int) -> None:
    from flowcli.db.connection import Database, resolve_target
    from flowcli.db.schema import require_schema

    db = Database(resolve_target(str(path)))
    require_schema(db)
    db.dispose()
    rng = random.Random(19)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    con.execute(
        "INSERT INTO flow_templates (id, name, type) "
        "VALUES (1, 'Demo', 'other'), (2, 'Other', 'other')"
    )
    con.execute(
        'INSERT INTO flow_steps (id, flow_template_id, "order", speaker_role_ref, task_type, '
        "context_scope) VALUES (1, 1, 1, 'A', 'ask_question', 'none')"
    )
    sessions, logs = [], []
    for sid in range(1, n + 1):
        roll = rng.random()
        status = (
            "finished"
            if roll < 0.70
            else "failed"
            if roll < 0.85
            else "running"
            if roll < 0.95
            else "cancelled"
        )
        created = NOW - timedelta(days=rng.uniform(0, 60))
        ended = created + timedelta(minutes=rng.uniform(1, 30)) if status != "running" else None
        timeout = rng.random() < 0.5
        error = (
            ("LLM timeout after 60 s" if timeout else "no such table: step_execution_logs")
            if status == "failed"
            else None
        )
        tier = rng.choice(["gold", "silver", "bronze"])
        sessions.append(
            (
                sid,
                f"topic {sid}",
                1 if sid % 3 else 2,
                status,
                error,
                created.strftime(FMT),
                (ended or created).strftime(FMT),
                ended.strftime(FMT) if ended else None,
                1,
                1,
                json.dumps({"tier": tier}),
            )
        )
        logs.append((sid, 1, 1, "completed", "success", None))
        if status == "failed":
            logs.append((sid, 1, 2, "failed", "error", error))
    con.executemany(
        "INSERT INTO sessions (id, topic, flow_template_id, status, error_reason, created_at, "
        "updated_at, ended_at, current_round, executed_steps_count, variables) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sessions,
    )
    con.executemany(
        "INSERT INTO step_execution_logs (session_id, step_id, execution_order, status, "
        "result_type, error_message) VALUES (?, ?, ?, ?, ?, ?)",
        logs,
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()


def timed(cmd: list[str], runs: int) -> tuple[float, float, str]:
    """Median wall-clock and CPU (user + system) seconds of ``cmd``, and its output."""
    walls, cpus, out = [], [], ""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    env.pop("FLOWCLI_DB", None)
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd[:6])}… failed: {done.stderr.strip()}")
        out = done.stdout.strip()
    return statistics.median(walls), statistics.median(cpus), out


def baseline_cmd(path: Path, sql: str) -> list[str]:
    shell = shutil.which("sqlite3")
    if shell is not None:
        return [shell, str(path), sql]
    code = (
        "import sqlite3, sys; "
        "print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])"
    )
    return [sys.executable, "-c", code, str(path), sql]


# Times only the selection, inside one process that has already started (imports done,
# database opened): what `--where` itself costs, apart from Python's and flowcli's start-up.
IN_PROCESS = """
import json, statistics, sys, time
from flowcli.db.connection import Database, resolve_target
from flowcli.engine.selector import count_sessions
db = Database(resolve_target(sys.argv[1]))
count_sessions(db, sys.argv[2])  # warm: the first query reads the file into the page cache
times = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    out = count_sessions(db, sys.argv[2])
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times), "count": out["count"]}))
"""


def in_process(path: Path, where: str, runs: int) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(path), where, str(runs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"in-process timing of {where!r} failed: {done.stderr.strip()[-500:]}")
    data = json.loads(done.stdout)
    return float(data["median_s"]), int(data["count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.sessions < 100 or args.runs < 1:
        parser.error("--sessions must be at least 100 and --runs at least 1")
    with tempfile.TemporaryDirectory(prefix="flowcli-where-") as tmp:
        path = Path(tmp) / "where.db"
        t0 = time.perf_counter()
        build(path, args.sessions)
        print(
            f"built {args.sessions:,} sessions in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
        flowcli = [sys.executable, "-m", "flowcli", "--db", str(path), "session", "count"]
        cutoff = (NOW - timedelta(days=7)).strftime(FMT)
        load = os.getloadavg()[0]
        print(
            f"flowcli session count --where: {args.sessions:,} sessions, median of "
            f"{args.runs} (load average {load:.1f} on {os.cpu_count()} CPUs)"
        )
        print(
            f"{'question':<52} {'wall s':>7} {'cpu s':>6} {'sqlite3 wall':>12} {'ratio':>6}  counts"
        )
        mismatches = 0
        sql_walls, sql_cpus = [], []
        plain_cpu = 0.0
        for where in ("", TIMEOUT_WHERE, AGE_WHERE):
            cmd = flowcli + (["--where", where] if where else [])
            wall, cpu, count = timed(cmd, args.runs)
            sql = BASELINE_SQL[where].format(cutoff=cutoff)
            base, _base_cpu, expected = timed(baseline_cmd(path, sql), args.runs)
            same = count == expected
            mismatches += not same
            if where:
                sql_walls.append(wall)
                sql_cpus.append(cpu)
            else:
                plain_cpu = cpu
            label = where or "(no --where: start-up and count(*))"
            print(
                f"{label:<52} {wall:>7.3f} {cpu:>6.3f} {base:>12.3f} {wall / base:>6.1f}  "
                f"{count} {'=' if same else '!='} {expected}"
            )
        for where in (NARROWED_WHERE, SANDBOX_WHERE):
            wall, cpu, out = timed(flowcli + ["--where", where, "--json"], args.runs)
            evaluated = json.loads(out)["evaluated"]
            print(f"{where:<52} {wall:>7.3f} {cpu:>6.3f} {'':>12} {'':>6}  {evaluated}")
        print(f"{'the selection alone, in a started process':<52} {'s':>7}")
        selection = []
        for where in (TIMEOUT_WHERE, AGE_WHERE):
            seconds, _count = in_process(path, where, args.runs)
            selection.append(seconds)
            print(f"{where:<52} {seconds:>7.3f}")
        worst_wall, worst_cpu = max(sql_walls), max(sql_cpus)
        verdict = "well under" if worst_wall < 0.5 else "under" if worst_wall < 1 else "NOT under"
        print(
            f"SQL-expressible selectors, whole process: {worst_wall:.3f}s wall, "
            f"{worst_cpu:.3f}s CPU at worst ({verdict} a second of wall-clock time); "
            f"the --where itself adds {worst_cpu - plain_cpu:+.3f}s CPU to a plain count"
        )
        worst_sel = max(selection)
        verdict_sel = "well under" if worst_sel < 0.5 else "under" if worst_sel < 1 else "NOT under"
        print(
            f"SQL-expressible selectors, the selection itself: {worst_sel:.3f}s at worst "
            f"({verdict_sel} a second)"
        )
        if mismatches:
            sys.exit(f"{mismatches} count(s) differ from the baseline")


if __name__ == "__main__":
    main()
