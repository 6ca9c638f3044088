"""Scale out: 1, 2 and 4 `flowcli worker` processes drain 100 sessions of 50 steps.

    python benchmarks/workers.py                              # PostgreSQL and SQLite
    python benchmarks/workers.py --sessions 10 --steps 10     # quick (CI smoke test)

PostgreSQL comes from $FLOWCLI_TEST_PG_URL (default postgresql+psycopg://postgres@
127.0.0.1:5432/test); a throwaway database is created and dropped. For each worker count
it reports steps per second, the speed-up over one worker, and the exactly-once check
(every session finished, execution_order 1..n with no gap or duplicate, one message per
completed step). The same workload runs on SQLite with 1 and 2 workers for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

FLOWCLI = [sys.executable, "-m", "flowcli"]
PG_URL = os.environ.get("FLOWCLI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FLOW = """
name: workers
termination_config: {{max_steps: 100000}}
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


def prepare(url: str, tmp: Path, sessions: int, steps: int) -> None:
    env = dict(os.environ, FLOWCLI_DB=url)
    flow = tmp / "workers.yaml"
    flow.write_text(FLOW.format(loops=steps // 2 - 1))
    subprocess.run(
        [*FLOWCLI, "flow", "import", str(flow)], check=True, capture_output=True, env=env
    )
    subprocess.run(
        [*FLOWCLI, "session", "create", "--flow", "1"], check=True, capture_output=True, env=env
    )
    engine = create_engine(url, poolclass=NullPool)
    # The first session comes from the CLI; the rest are copies of it (much faster than
    # 100 process start-ups); then all are started.
    with engine.begin() as conn:
        cols = (
            "user_id, topic, flow_template_id, flow_snapshot, roles_snapshot, status, "
            "current_step_id, current_round, executed_steps_count, created_at, updated_at, "
            "version, engine_state, variables"
        )
        for _ in range(sessions - 1):
            conn.execute(
                text(f"INSERT INTO sessions ({cols}) SELECT {cols} FROM sessions WHERE id = 1")
            )
        conn.execute(
            text(
                "INSERT INTO session_roles (session_id, role_ref, role_id, created_at)"
                " SELECT s.id, r.role_ref, r.role_id, r.created_at FROM sessions s, "
                "session_roles r WHERE r.session_id = 1 AND s.id > 1"
            )
        )
    with engine.begin() as conn:
        first = conn.execute(
            text('SELECT id FROM flow_steps WHERE flow_template_id = 1 ORDER BY "order" LIMIT 1')
        ).scalar()
        conn.execute(
            text("UPDATE sessions SET status = 'running', current_step_id = :f, current_round = 1"),
            {"f": first},
        )
    engine.dispose()


def drain(url: str, workers: int, expected: int) -> float:
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [
                *FLOWCLI,
                "--db",
                url,
                "--busy-timeout",
                "60",
                "worker",
                "--poll",
                "0.05",
                "--max-idle",
                "1.5",
                "--batch",
                "25",
                "--json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(workers)
    ]
    engine = create_engine(url, poolclass=NullPool)
    start = time.perf_counter()
    try:
        while True:
            with engine.connect() as conn:
                done = conn.execute(
                    text("SELECT count(*) FROM step_execution_logs WHERE status = 'completed'")
                ).scalar()
            if done >= expected:
                break
            if all(p.poll() is not None for p in procs):
                raise SystemExit(
                    "workers exited before the work was done: "
                    + procs[0].stderr.read().decode()[-500:]
                )
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    finally:
        for p in procs:
            p.wait(timeout=120)
        engine.dispose()
    return elapsed


def exactly_once(url: str, sessions: int, steps: int) -> bool:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        finished = conn.execute(
            text("SELECT count(*) FROM sessions WHERE status = 'finished'")
        ).scalar()
        bad = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT session_id, count(*) AS n,"
                " min(execution_order) AS lo, max(execution_order) AS hi,"
                " count(DISTINCT execution_order) AS d FROM "
                "step_execution_logs GROUP BY session_id) x WHERE n <> :steps OR lo <> 1 OR "
                "hi <> :steps OR d <> :steps"
            ),
            {"steps": steps},
        ).scalar()
        messages = conn.execute(text("SELECT count(*) FROM messages")).scalar()
    engine.dispose()
    return finished == sessions and bad == 0 and messages == sessions * steps


def pg_database() -> tuple[str, str] | None:
    base = make_url(PG_URL)
    name = f"flowcli_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:  # noqa: BLE001 - reported, and PostgreSQL is skipped
        print(f"PostgreSQL unavailable ({exc}); SQLite only", file=sys.stderr)
        return None
    return base.set(database=name).render_as_string(hide_password=False), name


def drop_pg(name: str) -> None:
    admin = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--pg-workers", default="1,2,4")
    parser.add_argument("--sqlite-workers", default="1,2")
    args = parser.parse_args()
    total = args.sessions * args.steps
    print(
        f"{args.sessions} sessions × {args.steps} steps = {total:,} steps per run; "
        f"{os.cpu_count()} cpus"
    )
    print(
        f"{'backend':10s} {'workers':>7s} {'seconds':>8s} {'steps/s':>9s} {'speed-up':>9s} "
        f"{'exactly once':>13s}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-workers-"))
    try:
        for backend, counts in (("postgres", args.pg_workers), ("sqlite", args.sqlite_workers)):
            base_rate = None
            for n in [int(c) for c in counts.split(",") if c]:
                if backend == "postgres":
                    made = pg_database()
                    if made is None:
                        break
                    url, name = made
                else:
                    url, name = f"sqlite:///{tmp / f'w{n}.db'}", ""
                try:
                    prepare(url, tmp, args.sessions, args.steps)
                    seconds = drain(url, n, total)
                    ok = exactly_once(url, args.sessions, args.steps)
                finally:
                    if backend == "postgres":
                        drop_pg(name)
                rate = total / seconds
                base_rate = base_rate or rate
                print(
                    f"{backend:10s} {n:7d} {seconds:8.2f} {rate:9.0f} {rate / base_rate:8.2f}× "
                    f"{'yes' if ok else 'NO':>13s}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
