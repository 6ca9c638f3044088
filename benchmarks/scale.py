"""Scale: the doctor on a big file, `auto` memory (exports: see exports.py).

    python benchmarks/scale.py                         # 1,000,000 executions, 20,000 steps
    python benchmarks/scale.py --rows 20000 --steps 3000   # quick (CI smoke test)

1. The doctor without --full on that file vs on a 1,000-row file (its schema and state
   checks should not depend on the number of rows), and `--full` vs SQLite's own
   `PRAGMA integrity_check` on the same file.
2. `auto` over --steps steps: resident memory at step 2,000 and at the last step, read
   from the log rows' memory_usage_mb (target: grows by less than 20 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - sibling modules
from exports import build as build_sessions  # noqa: E402 - one session of ~1 KB rows

FLOWCLI = [sys.executable, "-m", "flowcli"]


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak resident MB) of a child process, its output thrown away."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=subprocess.PIPE, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[:300]}")
    return elapsed, usage.ru_maxrss / 1024


def doctor_check_ms(path: Path, env: dict[str, str]) -> dict[str, float]:
    """Milliseconds per check group, from the doctor's own JSON."""
    out = subprocess.run(
        [*FLOWCLI, "--db", str(path), "db", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    groups: dict[str, float] = {
        "file": 0.0,
        "version": 0.0,
        "schema": 0.0,
        "state": 0.0,
        "storage": 0.0,
    }
    for check in json.loads(out)["checks"]:
        groups[check["group"]] = groups.get(check["group"], 0.0) + (check.get("duration_ms") or 0.0)
    return groups


def median_time(cmd: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(run_measured(cmd, env)[0] for _ in range(runs))


FLOW = """
name: memory
termination_config: {{max_steps: 10000000}}
roles:
  A: {{prompt: "You are A."}}
  B: {{prompt: "You are B."}}
steps:
  - speaker_role_ref: A
    target_role_ref: B
    task_type: ask_question
    context_scope: last_message
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: last_n_messages
    context_param: {{n: 3}}
    logic_config: {{next_step_order: 1, max_loops: {loops}}}
"""


def auto_memory(tmp: Path, steps: int) -> tuple[float, float, float]:
    db = tmp / "memory.db"
    env = dict(os.environ, FLOWCLI_DB=str(db))
    flow = tmp / "memory.yaml"
    flow.write_text(FLOW.format(loops=steps))
    subprocess.run(
        [*FLOWCLI, "flow", "import", str(flow)], check=True, capture_output=True, env=env
    )
    subprocess.run(
        [*FLOWCLI, "session", "create", "--flow", "1"], check=True, capture_output=True, env=env
    )
    start = time.perf_counter()
    subprocess.run(
        [*FLOWCLI, "auto", "1", "--max-steps", str(steps), "--quiet"],
        check=True,
        capture_output=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    con = sqlite3.connect(db)
    early = min(2000, steps // 10)
    at = dict(
        con.execute(
            "SELECT execution_order, memory_usage_mb FROM step_execution_logs "
            "WHERE session_id = 1 AND execution_order IN (?, ?)",
            (early, steps),
        ).fetchall()
    )
    con.close()
    return at[early], at[steps], elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    benchlib.add_results_option(parser)
    args = parser.parse_args()
    results = benchlib.Results("scale")
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-scale-"))
    try:
        big, small = tmp / "big.db", tmp / "small.db"
        t0 = time.perf_counter()
        build_sessions(big, args.rows, others=False)
        build_sessions(small, 1000, others=False)
        size = big.stat().st_size
        print(
            f"built {args.rows:,} executions ({size / 1e9:.2f} GB) in "
            f"{time.perf_counter() - t0:.0f}s",
            file=sys.stderr,
        )
        env = dict(os.environ)
        print(
            f"machine: {os.cpu_count()} cpus, Python {sys.version.split()[0]}, SQLite "
            f"{sqlite3.sqlite_version}; {args.rows:,} executions, {size / 1e6:,.0f} MB"
        )
        print("the doctor")
        checks_big = doctor_check_ms(big, env)
        checks_small = doctor_check_ms(small, env)
        print(f"{'check group':14s} {'1,000 rows':>12s} {f'{args.rows:,} rows':>14s}")
        for group in ("file", "version", "schema", "state", "storage"):
            print(f"{group:14s} {checks_small[group]:10.1f}ms {checks_big[group]:12.1f}ms")
        schema_state_ratio = (checks_big["schema"] + checks_big["state"]) / max(
            checks_small["schema"] + checks_small["state"], 0.001
        )
        results.note(
            f"doctor: schema + state checks on {args.rows:,} rows / on 1,000 rows: "
            f"{schema_state_ratio:.2f} (independent of the number of rows: near 1)"
        )
        d_big = median_time([*FLOWCLI, "--db", str(big), "db", "doctor", "--json"], env, args.runs)
        d_small = median_time(
            [*FLOWCLI, "--db", str(small), "db", "doctor", "--json"], env, args.runs
        )
        full = median_time([*FLOWCLI, "--db", str(big), "db", "doctor", "--full", "--json"], env, 1)
        start = time.perf_counter()
        con = sqlite3.connect(big)
        con.execute("PRAGMA integrity_check").fetchall()
        con.close()
        raw_full = time.perf_counter() - start
        print(
            f"doctor on {args.rows:,} rows: {d_big:.2f}s; on 1,000 rows: {d_small:.2f}s; "
            f"ratio {d_big / d_small:.2f} (rows-independent: near 1)"
        )
        print(
            f"doctor --full: {full:.2f}s; sqlite3 PRAGMA integrity_check: {raw_full:.2f}s; "
            f"ratio {full / raw_full:.2f}"
        )

        print("\nauto memory")
        early, late, seconds = auto_memory(tmp, args.steps)
        early_at = min(2000, args.steps // 10)
        growth = late - early
        print(
            f"resident memory at step {early_at:,}: {early:.1f} MB; at step {args.steps:,}: "
            f"{late:.1f} MB; growth {growth:+.1f} MB ({seconds:.1f}s for the run)"
        )
        results.add(
            benchlib.Ratio(
                f"auto: resident memory growth, step {early_at:,} to {args.steps:,} (MB)",
                growth,
                20,
                detail=f"{early:.1f} → {late:.1f} MB",
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results.write(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
