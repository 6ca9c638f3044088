"""flowcli beside Apache Burr and LangGraph: the same two-step loop, persisted every step.

    python benchmarks/peers.py                         # 100 vs 600 steps, 3 rounds
    python benchmarks/peers.py --short 10 --long 40 --rounds 1   # quick
    python benchmarks/peers.py --no-install            # only peers already installed

Burr (apache-burr, its SQLitePersister) and LangGraph (with langgraph-checkpoint-sqlite's
SqliteSaver) are installed each into its own venv under ~/.cache/flowcli-bench/venvs
(never into flowcli's environment or dependencies) and run peer_loops.py there. flowcli
runs `flowcli auto` on the equivalent flow. Two cases:

- fixed: each step writes a ~1 KB message; the state a step sees is the last one
  (flowcli: context_scope last_message; the peers: a 1 KB string replaced every step);
- growing: each step appends a ~1 KB message to a history every step sees in full
  (flowcli: context_scope all; the peers: a list in their state).

Every engine runs the same number of steps, as a fresh process, on SQLite in WAL mode at
the same synchronous level (flowcli's default NORMAL, or --synchronous full), alternating
in each round. Per-step cost = (long run - short run) / extra steps, so imports and
start-up cancel out (flowcli: each process's wall time; the peers: the time their steps
took, as peer_loops.py reports it, since their imports vary by seconds); medians over
the rounds. Target: flowcli faster than both in every
case, i.e. peer / flowcli > 1. What each side does exactly: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - a sibling module

PEER_LOOPS = str(Path(__file__).resolve().parent / "peer_loops.py")
PEERS = {
    "Burr": ("burr", ["apache-burr"], "import burr.core.persistence", ["apache-burr"]),
    "LangGraph": (
        "langgraph",
        ["langgraph", "langgraph-checkpoint-sqlite"],
        "import langgraph.checkpoint.sqlite",
        ["langgraph", "langgraph-checkpoint-sqlite", "langgraph-checkpoint"],
    ),
}
SCOPES = {"fixed": "last_message", "growing": "all"}


def flowcli_runner(
    prefix: list[str], env: dict[str, str], template: Path, tmp: Path, steps: int
) -> Callable[[], float]:
    def run() -> float:
        db = benchlib.copy_db(template, tmp / f"flowcli-{steps}.db")
        seconds = benchlib.timed_process(
            [*prefix, "--db", str(db), "auto", "1", "--max-steps", str(steps), "-q"], env=env
        )
        done = benchlib.sqlite3.connect(db)
        count = done.execute("SELECT count(*) FROM step_execution_logs").fetchone()[0]
        done.close()
        if count != steps:
            raise SystemExit(f"flowcli ran {count} steps, not {steps}")
        return seconds

    return run


def peer_runner(
    python: Path, framework: str, case: str, tmp: Path, steps: int, synchronous: str
) -> Callable[[], float]:
    def run() -> float:
        db = tmp / f"{framework}-{steps}.db"
        for leftover in tmp.glob(db.name + "*"):
            leftover.unlink()
        out = tmp / f"{framework}.out"
        with out.open("w") as fh:
            benchlib.timed_process(
                [str(python), PEER_LOOPS, framework, case, str(db), str(steps), synchronous],
                stdout=fh,
            )
        report = json.loads(out.read_text())
        if report["steps"] != steps:
            raise SystemExit(f"{framework} ran {report['steps']} steps, not {steps}")
        return float(report["seconds"])

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=100, help="steps in the short run")
    parser.add_argument("--long", type=int, default=600, help="steps in the long run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--cases", default="fixed,growing", help="fixed and/or growing")
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    parser.add_argument(
        "--no-install", action="store_true", help="use only peer venvs that already exist"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter with flowcli (default: this one)"
    )
    benchlib.add_results_option(parser)
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not 0 < args.short < args.long or args.rounds < 1 or not set(cases) <= set(SCOPES):
        parser.error("need 0 < --short < --long, --rounds ≥ 1, --cases of fixed,growing")

    results = benchlib.Results("peers")
    pythons: dict[str, Path] = {}
    for label, (name, packages, probe, version_names) in PEERS.items():
        python, why = benchlib.peer_venv(name, packages, probe, install=not args.no_install)
        if python is None:
            results.notes.append(f"{label}: skipped ({why})")
        else:
            pythons[label] = python
            results.versions.update(benchlib.package_versions(str(python), version_names))
    results.versions.update(benchlib.package_versions(args.python, ["flowcli"]))

    env = benchlib.measured_env()
    supported = benchlib.durability_support([args.python, "-m", "flowcli"])
    prefix, flowcli_env, how = benchlib.flowcli_command(
        args.python, args.synchronous, supported, env
    )
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-peers-"))
    per_step: dict[str, dict[str, float]] = {}
    try:
        for case in cases:
            template = tmp / f"template-{case}.db"
            flow = benchlib.loop_flow(tmp / f"{case}.yaml", scope=SCOPES[case])
            benchlib.prepare_session([args.python, "-m", "flowcli"], str(template), flow, env=env)
            benchlib.checkpoint(template)
            runners: dict[str, Callable[[], float]] = {}
            for steps in (args.short, args.long):
                runners[f"flowcli {steps}"] = flowcli_runner(
                    prefix, flowcli_env, template, tmp, steps
                )
                for label, python in pythons.items():
                    runners[f"{label} {steps}"] = peer_runner(
                        python, PEERS[label][0], case, tmp, steps, args.synchronous
                    )
            times = benchlib.alternate(runners, args.rounds, label=case)
            extra = args.long - args.short
            per_step[case] = {
                engine: benchlib.median(
                    [
                        (b - a) / extra
                        for a, b in zip(
                            times[f"{engine} {args.short}"],
                            times[f"{engine} {args.long}"],
                            strict=True,
                        )
                    ]
                )
                for engine in ["flowcli", *pythons]
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("flowcli beside Burr and LangGraph: the same two-step loop, persisted every step")
    print(f"machine: {benchlib.machine_line()}")
    print(
        f"steps: {args.short:,} vs {args.long:,}, median of {args.rounds} round(s); SQLite WAL, "
        f"synchronous={args.synchronous.upper()} (flowcli: {how})"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(results.versions.items())))
    for note in results.notes:
        print(note)
    print(f"{'case':8s} {'engine':10s} {'µs/step':>9s} {'÷ flowcli':>10s}")
    for case, engines in per_step.items():
        for engine, value in engines.items():
            versus = benchlib.ratio(value, engines["flowcli"])
            print(f"{case:8s} {engine:10s} {value * 1e6:9.1f} {versus:10.2f}")
    for case, engines in per_step.items():
        for engine in pythons:
            results.add(
                benchlib.Ratio(
                    f"{engine} step / flowcli step ({case} state)",
                    benchlib.ratio(engines[engine], engines["flowcli"]),
                    1.0,
                    op=">=",
                    detail=(
                        f"{engines[engine] * 1e6:.0f} vs {engines['flowcli'] * 1e6:.0f} µs; "
                        "above 1 means flowcli is faster"
                    ),
                )
            )
    results.write(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
