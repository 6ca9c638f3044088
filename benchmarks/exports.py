"""Exports: `flowcli logs S --jsonl` and `--csv` of a huge session, rows/s and memory.

    python benchmarks/exports.py                  # 1,000,000 rows, 3 rounds
    python benchmarks/exports.py --rows 50000 --rounds 1   # quick

Builds one SQLite file with flowcli's schema holding session 1 with --rows executions,
session 2 with --rows / 10 (for the memory comparison) and session 3 with one (for the
start-up), ~0.5 KB of snapshots per row. In alternating rounds it streams each export
to /dev/null and, as baselines dumping the same rows in the same run, Python's sqlite3
module (a fresh interpreter writing JSON lines with json.dumps / CSV with the csv
module) and the sqlite3 command-line shell (`-json`, `-csv`) when installed.

Rows per second are counted after start-up: the same command on the one-row session,
measured in the same rounds, is subtracted from each time. Memory is the process's peak
resident set (wait4, through a small spawning interpreter: see run_measured).
Targets: ≥ 200,000 rows/s for --jsonl and --csv; flat memory, i.e. the peak at --rows
within 1.1× of the peak at --rows / 10.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - sibling modules
from logs_last import NOW, create_schema, insert_bench_flow  # noqa: E402

TARGET_ROWS_PER_SECOND = 200_000
TARGET_MEMORY_RATIO = 1.1
FORMATS = ("jsonl", "csv")
QUERY = "SELECT * FROM step_execution_logs WHERE session_id = {sid} ORDER BY execution_order"

PYTHON_DUMP = """
import csv, json, sqlite3, sys
path, sid, fmt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = sqlite3.connect(path)
cur = con.execute(
    "SELECT * FROM step_execution_logs WHERE session_id = ? ORDER BY execution_order", (sid,)
)
names = [d[0] for d in cur.description]
out = sys.stdout
if fmt == "jsonl":
    dumps = json.dumps
    for row in cur:
        out.write(dumps(dict(zip(names, row))) + "\\n")
else:
    writer = csv.writer(out)
    writer.writerow(names)
    writer.writerows(cur)
"""


def build(path: Path, rows: int, *, others: bool = True) -> None:
    """Session 1 of ``rows`` executions (~1 KB each), on one step; with ``others``, also
    sessions 2 (rows // 10) and 3 (one), so the export reads one session among several."""
    create_schema(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    step = insert_bench_flow(con, "x" * 200)
    sizes = {1: rows, 2: max(rows // 10, 1), 3: 1} if others else {1: rows}
    for sid, count in sizes.items():
        con.execute(
            "INSERT INTO sessions (id, topic, flow_template_id, flow_snapshot, "
            "roles_snapshot, status, current_step_id, current_round, executed_steps_count, "
            "created_at, updated_at, version, engine_state, variables) VALUES (?, 'bench', "
            "1, ?, '{}', 'running', 1, 1, ?, ?, ?, 1, '{}', '{}')",
            (sid, json.dumps({"id": 1, "name": "bench", "steps": [step]}), count, NOW, NOW),
        )
    step_json = json.dumps(step)
    context = json.dumps(
        {
            "round": 1,
            "step_order": 1,
            "loop_iteration": 0,
            "attempt": 1,
            "vars": {"notes": "y" * 150},
            "loops": {},
            "context": {"scope": "none", "message_ids": [], "count": 0},
        }
    )
    result = json.dumps({"message_id": None, "decision": "next step in order"})
    for sid, count in sizes.items():
        con.executemany(
            "INSERT INTO step_execution_logs (session_id, execution_order, step_id, "
            "round_index, loop_iteration, attempt_count, status, result_type, result_data, "
            "duration_ms, memory_usage_mb, created_at, started_at, completed_at, "
            "step_snapshot, context_snapshot) VALUES (?, ?, 1, 1, 0, 1, 'completed', "
            f"'success', ?, 1, 40.0, '{NOW}', '{NOW}', '{NOW}', ?, ?)",
            ((sid, i, result, step_json, context) for i in range(1, count + 1)),
        )
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


# Peak memory of a child is read from wait4, but Linux counts in it the memory the child
# had before exec: with fork or vfork from this process (tens of MB after building the
# database) every child would report at least that. So a small interpreter (-I -S, a few
# MB) forks and execs each measured command and reports its time and peak.
SPAWN = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": usage.ru_maxrss / 1024,
                  "cpu": usage.ru_utime + usage.ru_stime,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(seconds, peak resident MB, CPU seconds) of a command whose output goes to
    /dev/null."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SPAWN, *cmd], capture_output=True, text=True, env=env
    )
    report = json.loads(done.stdout) if done.returncode == 0 and done.stdout else {"code": -1}
    if report["code"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-300:]}")
    return float(report["seconds"]), float(report["peak_mb"]), float(report["cpu"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="executions exported")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter with flowcli (default: this one)"
    )
    benchlib.add_results_option(parser)
    args = parser.parse_args(argv)
    if args.rows < 100 or args.rounds < 1:
        parser.error("--rows must be at least 100 and --rounds at least 1")

    results = benchlib.Results("exports")
    cli = shutil.which("sqlite3")
    env = benchlib.measured_env()
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-exports-"))
    try:
        db = tmp / "exports.db"
        t0 = time.perf_counter()
        build(db, args.rows)
        print(
            f"built {args.rows:,} rows ({db.stat().st_size / 1e6:,.0f} MB) in "
            f"{time.perf_counter() - t0:.0f}s",
            file=sys.stderr,
        )
        # (engine, format) -> command for a session id
        commands = {}
        for fmt in FORMATS:
            commands[("flowcli", fmt)] = lambda sid, fmt=fmt: [
                args.python,
                "-m",
                "flowcli",
                "--db",
                str(db),
                "logs",
                str(sid),
                f"--{fmt}",
            ]
            commands[("python sqlite3", fmt)] = lambda sid, fmt=fmt: [
                args.python,
                "-c",
                PYTHON_DUMP,
                str(db),
                str(sid),
                fmt,
            ]
            if cli:
                commands[("sqlite3 shell", fmt)] = lambda sid, fmt=fmt: [
                    cli,
                    "-json" if fmt == "jsonl" else "-csv",
                    *([] if fmt == "jsonl" else ["-header"]),
                    str(db),
                    QUERY.format(sid=sid),
                ]
        peaks: dict[tuple[str, str, int], list[float]] = {}
        cpus: dict[tuple[str, str, int], list[float]] = {}
        runners = {}
        for key, make in commands.items():
            for sid in (1, 2, 3):

                def run(key=key, make=make, sid=sid) -> float:  # type: ignore[no-untyped-def]
                    seconds, peak, cpu = run_measured(make(sid), env)
                    peaks.setdefault((*key, sid), []).append(peak)
                    cpus.setdefault((*key, sid), []).append(cpu)
                    return seconds

                runners[(*key, sid)] = run
        named = {f"{e} {f} s{s}": r for (e, f, s), r in runners.items()}
        times = benchlib.alternate(named, args.rounds, label="exports")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = benchlib.median
    print("exports of one session to /dev/null: rows/s after start-up, peak resident memory")
    print(f"machine: {benchlib.machine_line()}")
    print(
        f"rows: {args.rows:,} (memory also at {max(args.rows // 10, 1):,}); "
        f"median of {args.rounds} round(s)"
    )
    # Rows per CPU-second (user + system, from wait4) hold up better than rows per
    # second when other work shares the machine.
    print(
        f"{'engine':16s} {'format':6s} {'seconds':>8s} {'start-up':>9s} {'rows/s':>11s} "
        f"{'peak MB':>8s} {'at 1/10':>8s} {'rows/cpu-s':>11s}"
    )
    speed: dict[tuple[str, str], float] = {}
    cpu_speed: dict[tuple[str, str], float] = {}
    for engine, fmt in commands:
        total = median(times[f"{engine} {fmt} s1"])
        startup = median(times[f"{engine} {fmt} s3"])
        rate = benchlib.ratio(args.rows, total - startup)
        speed[(engine, fmt)] = rate
        peak, peak_tenth = median(peaks[(engine, fmt, 1)]), median(peaks[(engine, fmt, 2)])
        cpu_rate = benchlib.ratio(
            args.rows, median(cpus[(engine, fmt, 1)]) - median(cpus[(engine, fmt, 3)])
        )
        cpu_speed[(engine, fmt)] = cpu_rate
        print(
            f"{engine:16s} {fmt:6s} {total:8.2f} {startup:9.3f} {rate:11,.0f} "
            f"{peak:8.1f} {peak_tenth:8.1f} {cpu_rate:11,.0f}"
        )
        if engine == "flowcli":
            results.add(
                benchlib.Ratio(
                    f"flowcli logs --{fmt}: rows/s after start-up",
                    rate,
                    TARGET_ROWS_PER_SECOND,
                    op=">=",
                    detail=f"{args.rows:,} rows in {total - startup:.2f} s",
                )
            )
            results.add(
                benchlib.Ratio(
                    f"flowcli logs --{fmt}: peak memory at {args.rows:,} / at "
                    f"{max(args.rows // 10, 1):,} rows",
                    peak / peak_tenth,
                    TARGET_MEMORY_RATIO,
                    detail=f"{peak:.0f} vs {peak_tenth:.0f} MB",
                )
            )
    for fmt in FORMATS:
        for engine in ("python sqlite3", "sqlite3 shell"):
            if (engine, fmt) in speed:
                versus = benchlib.ratio(speed[("flowcli", fmt)], speed[(engine, fmt)])
                results.note(f"{fmt}: flowcli's rows/s are {versus:.2f}× {engine}'s")
                versus = benchlib.ratio(cpu_speed[("flowcli", fmt)], cpu_speed[(engine, fmt)])
                results.note(f"{fmt}: flowcli's rows per CPU-second are {versus:.2f}× {engine}'s")
    if not cli:
        results.note("sqlite3 shell: not installed, left out")
    results.write(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
