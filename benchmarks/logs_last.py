"""Does `flowcli logs SESSION --last 50` cost the same on 1,000,000 log rows as on 1,000?

Builds two temporary SQLite databases with flowcli's schema and a step_execution_logs
table of --rows and of --baseline rows (inserted directly with sqlite3 executemany,
~0.5 KB of snapshots per row, spread over many sessions; the session measured holds
half of all rows, interleaved with the others). Then it times the real command in a
subprocess (median of --runs) and the query alone in-process, and prints both with the
ratio large / baseline. A ratio near 1 means the query walks the
(session_id, execution_order) index and never the table.

    python benchmarks/logs_last.py                 # 1,000,000 vs 1,000 rows
    python benchmarks/logs_last.py --rows 20000    # a quick run (CI smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - a sibling module

TARGET_RATIO = 1.2  # issue 16: the command at 1,000,000 rows within 1.2x of 1,000 rows

SESSION_ROWS = 1000  # rows per background session
TARGET_SESSION = 1
NOW = "2026-01-01 12:00:00.000000"


def create_schema(path: Path) -> None:
    """An empty database at flowcli's head revision (the schema guard creates it)."""
    from flowcli.db.connection import Database, resolve_target
    from flowcli.db.schema import require_schema

    db = Database(resolve_target(str(path)))
    require_schema(db)
    db.dispose()


def insert_bench_flow(con: sqlite3.Connection, description: str) -> dict[str, Any]:
    """Flow 1 ("bench") with its one step (A asks B); returns the step as a snapshot
    carries it. Shared by the scripts that build log tables (exports.py, scale.py)."""
    step = {
        "id": 1,
        "flow_template_id": 1,
        "order": 1,
        "speaker_role_ref": "A",
        "target_role_ref": "B",
        "task_type": "ask_question",
        "context_scope": "none",
        "context_param": {},
        "logic_config": {},
        "next_step_id": None,
        "description": description,
    }
    con.execute(
        "INSERT INTO flow_templates (id, name, type, created_at) VALUES (1, 'bench', 'other', ?)",
        (NOW,),
    )
    con.execute(
        'INSERT INTO flow_steps (id, flow_template_id, "order", speaker_role_ref, '
        "target_role_ref, task_type, context_scope) VALUES (1, 1, 1, 'A', 'B', "
        "'ask_question', 'none')"
    )
    return step


def _log_rows(total: int, step_snapshot: str, context: str) -> Iterator[tuple[Any, ...]]:
    """Even rows go to the measured session, odd rows to background sessions."""
    orders: dict[int, int] = {}
    result = json.dumps({"message_id": None, "decision": "next step in order", "finished": False})
    for i in range(total):
        session = TARGET_SESSION if i % 2 == 0 else 2 + (i // 2) // SESSION_ROWS
        order = orders[session] = orders.get(session, 0) + 1
        yield (
            session,
            order,
            "completed",
            "success",
            result,
            i % 7,
            45.5,
            step_snapshot,
            context,
        )


def build(path: Path, total: int) -> int:
    """Fill a new database with ``total`` log rows; returns the measured session's rows."""
    create_schema(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    step = insert_bench_flow(con, "x" * 60)
    snapshot = {"id": 1, "name": "bench", "type": "bench", "steps": [step]}
    sessions = 2 + (total // 2) // SESSION_ROWS + 1
    con.executemany(
        "INSERT INTO sessions (id, topic, flow_template_id, flow_snapshot, roles_snapshot, "
        "status, current_step_id, current_round, executed_steps_count, created_at, "
        "updated_at, version, engine_state, variables) "
        "VALUES (?, 'bench', 1, ?, '{}', 'running', 1, 1, 0, ?, ?, 1, '{}', '{}')",
        ((sid, json.dumps(snapshot), NOW, NOW) for sid in range(1, sessions + 1)),
    )
    step_json = json.dumps(step)
    context_json = json.dumps(
        {
            "round": 1,
            "step_order": 1,
            "loop_iteration": 0,
            "attempt": 1,
            "executed_steps": 0,
            "vars": {"topic_notes": "y" * 120},
            "loops": {},
            "context": {"scope": "none", "message_ids": [], "count": 0, "truncated": False},
        }
    )
    con.executemany(
        "INSERT INTO step_execution_logs (session_id, execution_order, step_id, round_index, "
        "loop_iteration, attempt_count, status, result_type, result_data, duration_ms, "
        "memory_usage_mb, created_at, started_at, completed_at, step_snapshot, "
        f"context_snapshot) VALUES (?, ?, 1, 1, 0, 1, ?, ?, ?, ?, ?, '{NOW}', '{NOW}', "
        f"'{NOW}', ?, ?)",
        _log_rows(total, step_json, context_json),
    )
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    target_rows = con.execute(
        "SELECT count(*) FROM step_execution_logs WHERE session_id = ?", (TARGET_SESSION,)
    ).fetchone()[0]
    con.close()
    return int(target_rows)


def time_command(path: Path, last: int, runs: int) -> float:
    """Median wall time of `python -m flowcli --db PATH logs 1 --last N`, in seconds."""
    cmd = [sys.executable, "-m", "flowcli", "--db", str(path), "logs", str(TARGET_SESSION)]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([*cmd, "--last", str(last)], capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"flowcli failed: {done.stderr.decode().strip()}")
    return statistics.median(times)


def time_query(path: Path, last: int, runs: int) -> float:
    """Median time of the --last query alone (no process start), in seconds."""
    from flowcli.db.connection import Database, resolve_target
    from flowcli.db.log_queries import LogFilter, iter_logs

    db = Database(resolve_target(str(path)))
    times = []
    with db.read() as conn:
        for _ in range(max(runs, 5) * 4):
            t0 = time.perf_counter()
            rows = list(iter_logs(conn, TARGET_SESSION, LogFilter(last=last)))
            times.append(time.perf_counter() - t0)
            if len(rows) != last:
                raise SystemExit(f"expected {last} rows from --last {last}, got {len(rows)}")
    db.dispose()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the large table")
    parser.add_argument("--baseline", type=int, default=1_000, help="rows in the small table")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per size (median)")
    parser.add_argument("--last", type=int, default=50, help="N of --last N")
    benchlib.add_results_option(parser)
    args = parser.parse_args(argv)
    if min(args.rows, args.baseline) < 2 * args.last or args.runs < 1:
        parser.error("--rows and --baseline must be at least 2 × --last; --runs at least 1")

    results = []
    with tempfile.TemporaryDirectory(prefix="flowcli-bench-") as tmp:
        for total in (args.baseline, args.rows):
            path = Path(tmp) / f"logs-{total}.db"
            t0 = time.perf_counter()
            session_rows = build(path, total)
            built_s = time.perf_counter() - t0
            print(
                f"built {total:,} rows ({path.stat().st_size / 1e6:.0f} MB) in {built_s:.1f} s",
                file=sys.stderr,
            )
            results.append(
                (
                    total,
                    session_rows,
                    time_command(path, args.last, args.runs),
                    time_query(path, args.last, args.runs),
                )
            )

    print(f"flowcli logs SESSION --last {args.last}: median of {args.runs} run(s)")
    print(f"{'table rows':>12}  {'session rows':>12}  {'command':>10}  {'query':>10}")
    for total, session_rows, command_s, query_s in results:
        print(
            f"{total:>12,}  {session_rows:>12,}  {command_s * 1000:>7.1f} ms  "
            f"{query_s * 1000:>7.3f} ms"
        )
    (big, _, big_cmd, big_q), (small, _, small_cmd, small_q) = results[1], results[0]
    print(
        f"ratio ({big:,} / {small:,}): command {big_cmd / small_cmd:.2f}x, "
        f"query {big_q / small_q:.2f}x"
    )
    results = benchlib.Results("logs_last")
    results.add(
        benchlib.Ratio(
            f"logs --last {args.last}: whole command at {big:,} rows / at {small:,} rows",
            big_cmd / small_cmd,
            TARGET_RATIO,
            detail=f"query alone {big_q / small_q:.2f}x",
        )
    )
    results.write(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
