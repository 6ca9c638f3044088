"""`flowcli db prune` of 1,000,000 log rows while `flowcli auto` keeps running.

Builds a SQLite database with flowcli's schema holding --rows log rows (and one message
per log row, ~0.5 KB of snapshots per row like the other benchmarks) in finished
sessions of --per-session rows each, ended two days ago. Then, in the same run:

1. `flowcli auto` alone, --auto-steps steps of a loop flow: the gaps between its
   consecutive steps (from its own log rows' completion times) are the baseline.
2. The same `auto` on a fresh session of that flow, and while it runs, `flowcli db prune
   --older-than 1d --batch N` with its archive: the prune's rows per second, and the gaps
   between the auto's steps that completed while the prune ran.

It prints the rows per second and both gap distributions with their ratio; the longest
gap during the prune, less the median gap alone, is the longest time a concurrent step
waited for the prune (it must stay far below the 5 s busy timeout).

    python benchmarks/prune.py                       # 1,000,000 log rows
    python benchmarks/prune.py --rows 20000          # quick
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logs_last import create_schema  # noqa: E402 - a sibling script's helpers

FLOWCLI = [sys.executable, "-m", "flowcli"]
ENDED = "2000-01-01 00:00:00.000000"
BUSY_TIMEOUT_S = 5.0
LOOP_FLOW = """
roles:
  A: {prompt: "You are A."}
  B: {prompt: "You are B."}
name: bench loop
termination_config: {max_steps: 10000000}
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: last_message}
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: last_message
    logic_config: {next_step_order: 1, max_loops: 1000000}
"""


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def flowcli(db: Path, *args: str) -> str:
    done = subprocess.run(
        [*FLOWCLI, "--db", str(db), *args], capture_output=True, text=True, env=_env()
    )
    if done.returncode != 0:
        sys.exit(f"flowcli {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def build(path: Path, rows: int, per_session: int) -> int:
    """Finished sessions holding ``rows`` log rows and as many messages; their count."""
    create_schema(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("INSERT INTO roles (id, name, prompt) VALUES (1, 'P', 'prompt'), (2, 'Q', 'q')")
    con.execute(
        "INSERT INTO flow_templates (id, name, type, created_at) VALUES (1, 'pruned', 'other', ?)",
        (ENDED,),
    )
    con.execute(
        'INSERT INTO flow_steps (id, flow_template_id, "order", speaker_role_ref, '
        "target_role_ref, task_type, context_scope) VALUES (1, 1, 1, 'P', 'Q', "
        "'ask_question', 'none')"
    )
    step = json.dumps({"id": 1, "order": 1, "speaker_role_ref": "P", "task_type": "ask_question",
                       "context_scope": "none", "description": "x" * 120})  # fmt: skip
    context = json.dumps({"round": 1, "step_order": 1, "vars": {"notes": "y" * 150},
                          "context": {"scope": "none", "message_ids": [], "count": 0}})  # fmt: skip
    sessions = max(1, rows // per_session)
    snapshot = json.dumps({"id": 1, "name": "pruned", "steps": [json.loads(step)]})
    con.executemany(
        "INSERT INTO sessions (id, topic, flow_template_id, flow_snapshot, roles_snapshot, "
        "status, current_round, executed_steps_count, created_at, updated_at, ended_at, "
        "version, engine_state, variables) VALUES (?, 'bench', 1, ?, '{}', 'finished', 1, ?, "
        "?, ?, ?, 1, '{}', '{}')",
        ((sid, snapshot, per_session, ENDED, ENDED, ENDED) for sid in range(1, sessions + 1)),
    )
    con.executemany(
        "INSERT INTO session_roles (id, session_id, role_ref, role_id) VALUES (?, ?, ?, ?)",
        (
            (2 * sid - 1 + k, sid, ref, k + 1)
            for sid in range(1, sessions + 1)
            for k, ref in enumerate(("P", "Q"))
        ),
    )

    def logs() -> Iterator[tuple[Any, ...]]:
        n = 0
        for sid in range(1, sessions + 1):
            for order in range(1, per_session + 1):
                n += 1
                if n > rows:
                    return
                yield (n, sid, 2 * sid - 1, 2 * sid, "m" * 200, n, sid, order,
                       json.dumps({"message_id": n}), step, context)  # fmt: skip

    con.executemany(
        "INSERT INTO messages (id, session_id, speaker_session_role_id, target_session_role_id, "
        f"content, round_index, section, created_at) VALUES (?, ?, ?, ?, ?, 1, 'q', '{ENDED}')",
        (r[:5] for r in logs()),
    )
    con.executemany(
        "INSERT INTO step_execution_logs (id, session_id, execution_order, step_id, "
        "round_index, loop_iteration, attempt_count, status, result_type, result_data, "
        "duration_ms, memory_usage_mb, created_at, started_at, completed_at, step_snapshot, "
        "context_snapshot) VALUES (?, ?, ?, 1, 1, 0, 1, 'completed', 'success', ?, 3, 40.0, "
        f"'{ENDED}', '{ENDED}', '{ENDED}', ?, ?)",
        ((r[5], r[6], r[7], r[8], r[9], r[10]) for r in logs()),
    )
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sessions


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def step_gaps(db: Path, sid: int, start: datetime | None, end: datetime | None) -> list[float]:
    """Milliseconds between consecutive completed steps (both inside [start, end])."""
    con = sqlite3.connect(db)
    try:
        times = [
            datetime.fromisoformat(r[0])
            for r in con.execute(
                "SELECT completed_at FROM step_execution_logs WHERE session_id = ? "
                "AND status = 'completed' ORDER BY execution_order",
                (sid,),
            )
        ]
    finally:
        con.close()
    if start is not None and end is not None:
        times = [t for t in times if start <= t <= end]
    return [(b - a).total_seconds() * 1000 for a, b in zip(times, times[1:], strict=False)]


def describe(gaps: list[float]) -> dict[str, float | None]:
    if not gaps:
        return {"steps": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(gaps)
    return {
        "steps": len(gaps) + 1,
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:,.1f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="log rows to prune")
    parser.add_argument("--per-session", type=int, default=200, help="log rows per session")
    parser.add_argument("--batch", type=int, default=500, help="db prune --batch")
    parser.add_argument("--auto-steps", type=int, default=400, help="steps of the baseline auto")
    args = parser.parse_args()
    if args.rows < args.per_session or args.per_session < 1:
        parser.error("--rows must be at least --per-session (and both positive)")

    with tempfile.TemporaryDirectory(prefix="flowcli-prune-bench-") as tmp:
        db = Path(tmp) / "prune.db"
        t0 = time.perf_counter()
        sessions = build(db, args.rows, args.per_session)
        print(
            f"built {args.rows:,} log rows and messages in {sessions:,} sessions "
            f"({db.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
        flow_file = Path(tmp) / "loop.yaml"
        flow_file.write_text(LOOP_FLOW, encoding="utf-8")
        flow = json.loads(flowcli(db, "flow", "import", str(flow_file), "--json"))["id"]

        # 1. auto alone.
        alone_sid = json.loads(flowcli(db, "session", "create", "--flow", str(flow), "--json"))[
            "id"
        ]
        flowcli(db, "auto", str(alone_sid), "--max-steps", str(args.auto_steps), "--quiet")
        alone = describe(step_gaps(db, alone_sid, None, None))

        # 2. auto while the prune runs.
        sid = json.loads(flowcli(db, "session", "create", "--flow", str(flow), "--json"))["id"]
        auto = subprocess.Popen(
            [*FLOWCLI, "--db", str(db), "--busy-timeout", str(BUSY_TIMEOUT_S), "auto", str(sid),
             "--quiet"],
            stderr=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not step_gaps(db, sid, None, None) and time.monotonic() < deadline:
            time.sleep(0.05)  # until auto has run its first steps
        archive = Path(tmp) / "archive.jsonl.gz"
        start = _now()
        done = subprocess.run(
            [*FLOWCLI, "--db", str(db), "--busy-timeout", str(BUSY_TIMEOUT_S), "db", "prune",
             "--older-than", "1d", "--batch", str(args.batch), "--yes", "--json",
             "--archive", str(archive)],
            capture_output=True, text=True, env=_env(),
        )  # fmt: skip
        end = _now()
        auto.send_signal(signal.SIGINT)
        _, auto_err = auto.communicate(timeout=300)
        if done.returncode != 0:
            sys.exit(f"db prune failed: {done.stderr.strip()}")
        if auto.returncode not in (0, 130):
            sys.exit(f"the concurrent auto failed: {auto_err.strip()}")
        report = json.loads(done.stdout)
        during = describe(step_gaps(db, sid, start, end))
        archive_bytes = archive.stat().st_size

    log_rows = report["rows"]["step_execution_logs"]
    all_rows = sum(report["rows"].values())
    elapsed = report["elapsed_s"]
    print(
        f"flowcli db prune: {log_rows:,} log rows ({all_rows:,} rows in all) in "
        f"{report['session_count']:,} sessions, --batch {args.batch}, with its archive"
    )
    print(
        f"prune: {elapsed:,.1f} s, {log_rows / elapsed:,.0f} log rows/s "
        f"({all_rows / elapsed:,.0f} rows/s), {report['batches']:,} batches, "
        f"archive {archive_bytes / 1e6:,.1f} MB ({report['manifest']['sessions']:,} sessions, "
        "verified)"
    )
    print("                     steps   gap p50      gap p95      gap max")
    for label, d in (("auto alone", alone), ("auto during prune", during)):
        print(
            f"{label:<20} {d['steps']:>6,}   {_ms(d['p50']):<12} {_ms(d['p95']):<12} "
            f"{_ms(d['max'])}"
        )
    print(
        f"ratio during/alone:  p50 {_ratio(during['p50'], alone['p50'])}  "
        f"p95 {_ratio(during['p95'], alone['p95'])}  max {_ratio(during['max'], alone['max'])}"
    )
    longest = (
        None
        if during["max"] is None or alone["p50"] is None
        else max(0.0, during["max"] - alone["p50"])
    )
    print(
        f"longest wait of a concurrent step: {_ms(longest)} (gap max during − gap p50 alone); "
        f"busy timeout {BUSY_TIMEOUT_S * 1000:,.0f} ms"
    )


if __name__ == "__main__":
    main()
