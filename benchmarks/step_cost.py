"""The marginal step of `flowcli auto` against the bare driver replaying flowcli's own calls.

    python benchmarks/step_cost.py                        # 200 vs 1,200 steps, 5 rounds
    python benchmarks/step_cost.py --short 20 --long 120 --rounds 1   # quick

The baseline is not hand-written SQL. sqltrace.py runs `flowcli auto` once per size with
the driver wrapped and records every call it makes (statements with their parameters,
fetches, commits); the bare driver then replays those calls on a copy of the same
starting database, and the replayed database is checked to hold exactly what flowcli's
did. The flow is a two-step loop on flowcli's own schema (foreign keys on), with the
built-in template and a topic that makes every message about 1 KB.

Each round runs flowcli and the replay for the short and the long run, alternating;
the marginal cost per step is (long - short) / (extra steps), so start-up cancels out;
the ratio is the median flowcli marginal over the median replay marginal. Variants:

- sqlite normal: flowcli's default (WAL, synchronous=NORMAL); target ≤ 1.5×.
- sqlite full: synchronous=FULL on both sides; target ≤ 1.3×. flowcli runs with
  FLOWCLI_DURABILITY=full when it has that setting, else through sqltrace's pragma hook.
- postgres: a throwaway database on $FLOWCLI_TEST_PG_URL, replayed with bare psycopg;
  target ≤ 1.3×. Skipped, with a line saying why, when there is no server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - a sibling module
import sqltrace  # noqa: E402

SQLTRACE = str(Path(sqltrace.__file__).resolve())
TARGETS = {"sqlite normal": 1.5, "sqlite full": 1.3, "postgres": 1.3}


class Variant:
    """One database set-up: how to make a fresh copy of the starting database, how to
    point flowcli at it, and how the replay names it."""

    name: str
    synchronous: str | None = None  # what replay sets, if not what was recorded

    def fresh(self, tag: str) -> str:
        raise NotImplementedError

    def drop(self, target: str) -> None:
        pass

    def flowcli_db(self, target: str) -> str:
        return target

    def digest(self, target: str) -> dict[str, str]:
        raise NotImplementedError


class SqliteVariant(Variant):
    def __init__(self, name: str, template: Path, tmp: Path, synchronous: str | None) -> None:
        self.name, self.template, self.tmp, self.synchronous = name, template, tmp, synchronous

    def fresh(self, tag: str) -> str:
        return str(benchlib.copy_db(self.template, self.tmp / f"{tag}.db"))

    def drop(self, target: str) -> None:
        for path in self.tmp.glob(Path(target).name + "*"):
            path.unlink()

    def digest(self, target: str) -> dict[str, str]:
        return benchlib.table_digest(Path(target))


class PostgresVariant(Variant):
    def __init__(self, admin: Any, template_db: str) -> None:
        self.name, self.admin, self.template_db = "postgres", admin, template_db

    def fresh(self, tag: str) -> str:
        name = f"{self.template_db}_{tag}".replace("-", "_")
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_db}"')
        return name

    def drop(self, target: str) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{target}"')

    def flowcli_db(self, target: str) -> str:
        return benchlib.pg_url(target)

    def digest(self, target: str) -> dict[str, str]:
        return benchlib.pg_digest(benchlib.pg_url(target))


def flowcli_runner(
    python: str, variant: Variant, steps: int, env: dict[str, str], hook: str | None
) -> Callable[[], float]:
    """Seconds for one `flowcli auto` process to run ``steps`` steps on a fresh copy."""

    def run() -> float:
        target = variant.fresh(f"flowcli{steps}")
        args = ["--db", variant.flowcli_db(target), "auto", "1", "--max-steps", str(steps), "-q"]
        if hook is None:
            cmd = [python, "-m", "flowcli", *args]
        else:
            cmd = [python, SQLTRACE, "run", "--synchronous", hook, "--", *args]
        try:
            return benchlib.timed_process(cmd, env=env)
        finally:
            variant.drop(target)

    return run


def replay_runner(python: str, variant: Variant, trace: Path, steps: int) -> Callable[[], float]:
    """Seconds the bare driver spends replaying ``trace`` on a fresh copy (its own clock:
    loading the trace file is not part of the work)."""

    def run() -> float:
        target = variant.fresh(f"raw{steps}")
        cmd = [python, SQLTRACE, "replay", str(trace), target]
        if variant.synchronous:
            cmd += ["--synchronous", variant.synchronous]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"replay failed: {done.stderr[-600:]}")
            return float(json.loads(done.stdout)["seconds"])
        finally:
            variant.drop(target)

    return run


def record(
    python: str, variant: Variant, tmp: Path, steps: int, env: dict[str, str], hook: str | None
) -> tuple[Path, list[int]]:
    """Run flowcli once under the recorder; check the bare replay writes the same data.
    Returns the trace and the synchronous levels SQLite really ran at."""
    trace = tmp / f"{variant.name.replace(' ', '-')}-{steps}.trace"
    target = variant.fresh(f"rec{steps}")
    cmd = [python, SQLTRACE, "record", str(trace)]
    if hook is not None:
        cmd += ["--synchronous", hook]
    cmd += ["--", "--db", variant.flowcli_db(target), "auto", "1", "--max-steps", str(steps), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"recording flowcli failed: {done.stderr[-600:]}")
    seen = json.loads(done.stderr.strip().splitlines()[-1])["synchronous_seen"]
    replayed = variant.fresh(f"check{steps}")
    check_cmd = [python, SQLTRACE, "replay", str(trace), replayed]
    if variant.synchronous:
        check_cmd += ["--synchronous", variant.synchronous]
    subprocess.run(check_cmd, check=True, capture_output=True)
    try:
        if variant.digest(target) != variant.digest(replayed):
            raise SystemExit(f"{variant.name}: the replay did not write what flowcli wrote")
    finally:
        variant.drop(target)
        variant.drop(replayed)
    return trace, seen


def per_step_calls(short: Path, long: Path, steps: int) -> dict[str, float]:
    a = sqltrace.summary(sqltrace.load(str(short)))
    b = sqltrace.summary(sqltrace.load(str(long)))
    return {k: (b.get(k, 0) - a.get(k, 0)) / steps for k in sorted(set(a) | set(b))}


def measure(
    variant: Variant,
    python: str,
    tmp: Path,
    short: int,
    long: int,
    rounds: int,
    env: dict[str, str],
    hook: str | None,
) -> dict[str, Any]:
    traces = {}
    seen: list[int] = []
    for steps in (short, long):
        traces[steps], levels = record(python, variant, tmp, steps, env, hook)
        seen += levels
    runners = {
        f"flowcli {short}": flowcli_runner(python, variant, short, env, hook),
        f"flowcli {long}": flowcli_runner(python, variant, long, env, hook),
        f"raw {short}": replay_runner(python, variant, traces[short], short),
        f"raw {long}": replay_runner(python, variant, traces[long], long),
    }
    times = benchlib.alternate(runners, rounds, label=variant.name)
    extra = long - short
    flowcli = [
        (b - a) / extra
        for a, b in zip(times[f"flowcli {short}"], times[f"flowcli {long}"], strict=True)
    ]
    raw = [
        (b - a) / extra for a, b in zip(times[f"raw {short}"], times[f"raw {long}"], strict=True)
    ]
    return {
        "flowcli": benchlib.median(flowcli),
        "raw": benchlib.median(raw),
        "round_ratios": [benchlib.ratio(f, r) for f, r in zip(flowcli, raw, strict=True)],
        "calls": per_step_calls(traces[short], traces[long], extra),
        "synchronous_seen": sorted(set(seen)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=200, help="steps in the short run")
    parser.add_argument("--long", type=int, default=1200, help="steps in the long run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    parser.add_argument("--pg-short", type=int, default=50, help="short run on PostgreSQL")
    parser.add_argument("--pg-long", type=int, default=300, help="long run on PostgreSQL")
    parser.add_argument(
        "--variants",
        default="normal,full,postgres",
        help="comma-separated: normal, full, postgres",
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter with flowcli (default: this one)"
    )
    benchlib.add_results_option(parser)
    args = parser.parse_args(argv)
    if not 0 < args.short < args.long or not 0 < args.pg_short < args.pg_long or args.rounds < 1:
        parser.error("need 0 < --short < --long, 0 < --pg-short < --pg-long, --rounds ≥ 1")
    wanted = {v.strip() for v in args.variants.split(",") if v.strip()}
    if not wanted <= {"normal", "full", "postgres"}:
        parser.error("--variants takes normal, full and/or postgres")

    results = benchlib.Results("step_cost")
    print("step cost: marginal µs per step of `flowcli auto` vs the bare driver replaying the")
    print(f"calls flowcli made; median of {args.rounds} alternating round(s)")
    print(f"machine: {benchlib.machine_line()}")
    print("(a busy machine slows both sides alike; only the ratios compare across runs)")
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-stepcost-"))
    flowcli = [args.python, "-m", "flowcli"]
    env = benchlib.measured_env()
    supported = benchlib.durability_support(flowcli)
    rows: list[tuple[str, dict[str, Any] | None, str]] = []
    try:
        flow = benchlib.loop_flow(tmp / "bench.yaml")
        template = tmp / "template.db"
        benchlib.prepare_session(flowcli, str(template), flow)
        benchlib.checkpoint(template)
        for name in ("normal", "full"):
            if name not in wanted:
                continue
            variant = SqliteVariant(
                f"sqlite {name}", template, tmp, None if name == "normal" else "full"
            )
            run_env, hook = env, None
            if name == "full":
                if supported:
                    run_env = dict(env, FLOWCLI_DURABILITY="full")
                else:
                    hook = "full"
            data = measure(
                variant, args.python, tmp, args.short, args.long, args.rounds, run_env, hook
            )
            expected = 1 if name == "normal" else 2
            if data["synchronous_seen"] != [expected]:
                raise SystemExit(
                    f"{variant.name}: flowcli ran at synchronous {data['synchronous_seen']}, "
                    f"expected {expected}"
                )
            how = (
                "synchronous=NORMAL, flowcli's default"
                if name == "normal"
                else "synchronous=FULL via FLOWCLI_DURABILITY=full"
                if supported
                else "synchronous=FULL via sqltrace's pragma hook (no durability setting yet)"
            )
            rows.append((variant.name, data, how))
        if "postgres" in wanted:
            rows.append(postgres(args, tmp, env))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"steps: {args.short:,} vs {args.long:,} on SQLite, "
        f"{args.pg_short:,} vs {args.pg_long:,} on PostgreSQL"
    )
    print(f"{'variant':16s} {'flowcli µs':>11s} {'replay µs':>10s} {'ratio':>6s}  rounds' ratios")
    for name, data, how in rows:
        if data is None:
            print(f"{name:16s} skipped: {how}")
            continue
        spread = " ".join(f"{r:.2f}" for r in data["round_ratios"])
        print(
            f"{name:16s} {data['flowcli'] * 1e6:11.1f} {data['raw'] * 1e6:10.1f} "
            f"{benchlib.ratio(data['flowcli'], data['raw']):6.2f}  {spread}"
        )
    for name, data, how in rows:
        if data is None:
            results.notes.append(f"{name}: skipped ({how})")
            continue
        calls = data["calls"]
        print(
            f"{name}: per step flowcli made {calls.get('execute', 0):.1f} statements, "
            f"{calls.get('fetchone', 0) + calls.get('fetchall', 0) + calls.get('next', 0):.1f} "
            f"fetches, {calls.get('commit', 0):.1f} commits; {how}"
        )
    for name, data, _how in rows:
        if data is not None:
            results.add(
                benchlib.Ratio(
                    f"{name} step / bare replay",
                    benchlib.ratio(data["flowcli"], data["raw"]),
                    TARGETS[name],
                    detail=f"{data['flowcli'] * 1e6:.0f} vs {data['raw'] * 1e6:.0f} µs",
                )
            )
    results.versions = {"sqlite": benchlib.sqlite3.sqlite_version}
    results.write(args.results)
    return 0


def postgres(args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> tuple[str, Any, str]:
    admin, why = benchlib.pg_admin()
    if admin is None:
        return ("postgres", None, f"no PostgreSQL at {benchlib.PG_URL}: {why}")
    template_db = f"flowcli_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin.execute(f'CREATE DATABASE "{template_db}"')
        flow = benchlib.loop_flow(tmp / "pg.yaml")
        benchlib.prepare_session(
            [args.python, "-m", "flowcli"], benchlib.pg_url(template_db), flow, env=env
        )
        variant = PostgresVariant(admin, template_db)
        data = measure(
            variant, args.python, tmp, args.pg_short, args.pg_long, args.rounds, env, None
        )
        server = admin.execute("SHOW server_version").fetchone()[0]
        return ("postgres", data, f"server PostgreSQL {server.split()[0]}")
    finally:
        for (name,) in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (template_db + "%",)
        ).fetchall():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
