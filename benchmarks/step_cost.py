"""Marginal cost of one durable step: flowcli `auto` vs raw sqlite3 vs LangGraph.

Each engine runs a short and a long run of the same loop flow; the marginal cost per
step is (long - short) / (extra steps), so start-up cancels out. Everything is measured
in this run, on this machine, and reported as ratios against the raw sqlite3 floor.

    python benchmarks/step_cost.py                    # 500 vs 5,500 steps
    python benchmarks/step_cost.py --short 50 --long 300 --repeat 1   # quick

LangGraph is measured only when importable (install it in a separate environment, never
as a project dependency: see benchmarks/README.md). Use --langgraph-python to point at
that environment's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SNAPSHOT = json.dumps({"pad": "x" * 480})  # ~0.5 KB, like flowcli's step/context snapshots

FLOW = """
name: bench
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
    context_scope: last_message
    logic_config: {{next_step_order: 1, max_loops: {loops}}}
"""


def flowcli_cmd() -> list[str]:
    return [sys.executable, "-m", "flowcli"]


def run_flowcli(tmp: Path, steps: int) -> float:
    """Seconds for `flowcli auto` to run ``steps`` steps of a fresh session (one process)."""
    db = tmp / f"flowcli-{steps}.db"
    for leftover in tmp.glob(f"flowcli-{steps}.db*"):
        leftover.unlink()
    flow = tmp / "bench.yaml"
    flow.write_text(FLOW.format(loops=steps))
    env = dict(os.environ, FLOWCLI_DB=str(db))
    subprocess.run(
        [*flowcli_cmd(), "flow", "import", str(flow)], check=True, capture_output=True, env=env
    )
    sid = subprocess.run(
        [*flowcli_cmd(), "session", "create", "--flow", "1"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    start = time.perf_counter()
    subprocess.run(
        [*flowcli_cmd(), "auto", sid, "--max-steps", str(steps), "--quiet"],
        check=True,
        capture_output=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    con = sqlite3.connect(db)
    count = con.execute("SELECT count(*) FROM step_execution_logs").fetchone()[0]
    con.close()
    assert count == steps, (count, steps)
    return elapsed


RAW_SCRIPT = textwrap.dedent('''
    import json, sqlite3, sys, time
    path, steps, snapshot = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=NORMAL")
    con.executescript("""
      CREATE TABLE sessions (id INTEGER PRIMARY KEY, status TEXT, current_step_id INTEGER,
        current_round INTEGER, executed_steps_count INTEGER, version INTEGER, updated_at TEXT);
      CREATE TABLE messages (id INTEGER PRIMARY KEY, session_id INTEGER, speaker INTEGER,
        content TEXT, round_index INTEGER, section TEXT, created_at TEXT);
      CREATE TABLE logs (id INTEGER PRIMARY KEY, session_id INTEGER, step_id INTEGER,
        parent_log_id INTEGER, execution_order INTEGER, round_index INTEGER,
        loop_iteration INTEGER, attempt_count INTEGER, status TEXT, result_type TEXT,
        result_data TEXT, condition_evaluation INTEGER, loop_check_result INTEGER,
        error_message TEXT, duration_ms INTEGER, memory_usage_mb REAL, created_at TEXT,
        started_at TEXT, completed_at TEXT, step_snapshot TEXT, context_snapshot TEXT);
      CREATE UNIQUE INDEX ux ON logs (session_id, execution_order);
      INSERT INTO sessions VALUES (1, 'running', 1, 1, 0, 1, '');
    """)
    start = time.perf_counter()
    for i in range(1, steps + 1):
        now = "2026-01-01 00:00:00.000000"
        con.execute("BEGIN IMMEDIATE")
        row = con.execute("SELECT status, current_step_id, current_round, executed_steps_count,"
                          " version FROM sessions WHERE id = 1").fetchone()
        mid = con.execute("INSERT INTO messages (session_id, speaker, content, round_index,"
                          " section, created_at) VALUES (1, 1, ?, 1, 'ask', ?)",
                          (f"message {i}", now)).lastrowid
        con.execute("INSERT INTO logs (session_id, step_id, parent_log_id, execution_order,"
                    " round_index, loop_iteration, attempt_count, status, result_type,"
                    " result_data, condition_evaluation, loop_check_result, error_message,"
                    " duration_ms, memory_usage_mb, created_at, started_at, completed_at,"
                    " step_snapshot, context_snapshot) VALUES (1, 1, NULL, ?, 1, 0, 1,"
                    " 'completed', 'success', ?, NULL, NULL, NULL, 0, 30.0, ?, ?, ?, ?, ?)",
                    (i, json.dumps({"message_id": mid}), now, now, now, snapshot, snapshot))
        con.execute("UPDATE sessions SET current_step_id = ?, executed_steps_count = ?,"
                    " version = ?, updated_at = ? WHERE id = 1 AND version = ?",
                    (row[1], row[3] + 1, row[4] + 1, now, row[4]))
        con.execute("COMMIT")
    print(time.perf_counter() - start)
''')


def run_raw(tmp: Path, steps: int) -> float:
    """Seconds for the raw sqlite3 floor (a fresh interpreter, like the others)."""
    db = tmp / f"raw-{steps}.db"
    for leftover in tmp.glob(f"raw-{steps}.db*"):
        leftover.unlink()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", RAW_SCRIPT, str(db), str(steps), SNAPSHOT],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


LANGGRAPH_SCRIPT = textwrap.dedent("""
    import sqlite3, sys, operator
    from typing import Annotated, TypedDict
    from langgraph.graph import StateGraph, END
    from langgraph.checkpoint.sqlite import SqliteSaver
    path, steps = sys.argv[1], int(sys.argv[2])
    class State(TypedDict):
        messages: Annotated[list, operator.add]
        n: int
    def speak(state):
        return {"messages": [f"message {state['n']}"], "n": state["n"] + 1}
    def route(state):
        return END if state["n"] >= steps else "speak"
    g = StateGraph(State)
    g.add_node("speak", speak)
    g.set_entry_point("speak")
    g.add_conditional_edges("speak", route)
    con = sqlite3.connect(path, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=NORMAL")
    app = g.compile(checkpointer=SqliteSaver(con))
    app.invoke({"messages": [], "n": 0},
               {"configurable": {"thread_id": "t"}, "recursion_limit": steps + 10})
""")


def run_langgraph(python: str, tmp: Path, steps: int) -> float:
    db = tmp / f"langgraph-{steps}.db"
    for leftover in tmp.glob(f"langgraph-{steps}.db*"):
        leftover.unlink()
    start = time.perf_counter()
    subprocess.run(
        [python, "-c", LANGGRAPH_SCRIPT, str(db), str(steps)], check=True, capture_output=True
    )
    return time.perf_counter() - start


def langgraph_python(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [str(HERE / ".env" / "bin" / "python"), sys.executable]
    for python in candidates:
        if (
            python
            and Path(python).exists()
            and subprocess.run(
                [python, "-c", "import langgraph.checkpoint.sqlite"], capture_output=True
            ).returncode
            == 0
        ):
            return python
    return None


def marginal(fn, short: int, long: int, repeat: int) -> float:
    """Median marginal seconds per step over ``repeat`` (short, long) pairs."""
    values = []
    for _ in range(repeat):
        t_short = fn(short)
        t_long = fn(long)
        values.append((t_long - t_short) / (long - short))
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=500)
    parser.add_argument("--long", type=int, default=5500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--langgraph-python", default=None)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-bench-"))
    try:
        results = {
            "raw sqlite3 (floor)": marginal(
                lambda n: run_raw(tmp, n), args.short, args.long, args.repeat
            ),
            "flowcli auto": marginal(
                lambda n: run_flowcli(tmp, n), args.short, args.long, args.repeat
            ),
        }
        lg = langgraph_python(args.langgraph_python)
        if lg is not None:
            results["LangGraph + SqliteSaver"] = marginal(
                lambda n: run_langgraph(lg, tmp, n), args.short, args.long, args.repeat
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    floor = results["raw sqlite3 (floor)"]
    flowcli = results["flowcli auto"]
    if args.json:
        print(json.dumps({k: v * 1e6 for k, v in results.items()}))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    print(f"steps: {args.short} vs {args.long}, median of {args.repeat}")
    print(f"{'engine':28s} {'µs/step':>9s} {'× floor':>8s} {'flowcli faster by':>18s}")
    for name, value in results.items():
        faster = (
            "" if name in ("flowcli auto", "raw sqlite3 (floor)") else f"{value / flowcli:.2f}×"
        )
        print(f"{name:28s} {value * 1e6:9.1f} {value / floor:8.2f} {faster:>18s}")
    print(
        f"target: flowcli ≤ 5× floor: {'met' if flowcli <= 5 * floor else 'missed'}"
        f" ({flowcli / floor:.2f}×)"
    )
    if "LangGraph + SqliteSaver" in results:
        lgv = results["LangGraph + SqliteSaver"]
        print(
            f"target: ≥ 3× faster than LangGraph: {'met' if lgv >= 3 * flowcli else 'missed'}"
            f" ({lgv / flowcli:.2f}×)"
        )
    else:
        print("LangGraph: not installed here (see benchmarks/README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
