"""Run every benchmark script and print one table of every ratio against its target.

    python benchmarks/run_all.py                  # moderate sizes (about 15-30 minutes)
    python benchmarks/run_all.py --size full      # each script's own defaults (the sizes
                                                  # BENCHMARKS.md quotes; an hour or more)
    python benchmarks/run_all.py --size quick     # tiny: checks the scripts run
    python benchmarks/run_all.py --only step_cost,peers

First it builds a wheel of the working tree into a cached venv (benchlib.built_flowcli;
or `--venv PATH`), so every script measures the same non-editable, byte-compiled
flowcli. Each script's own report goes to LOG_DIR/SCRIPT.txt; this prints the machine,
date, Python, SQLite, PostgreSQL and library versions, then one Markdown table of
every target, ready to quote in BENCHMARKS.md. A script that fails is listed as such
and makes the exit status 1; the others still run. (workers.py, the scale-out figures,
has no target and is run on its own.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - a sibling module

HERE = Path(__file__).resolve().parent
# Per script and size: its arguments. "{python}" and "{venv}" are filled in.
PLANS: dict[str, dict[str, list[str]]] = {
    "commands": {
        "quick": ["--rounds", "1"],
        "moderate": ["--rounds", "7"],
        "full": [],
    },
    "step_cost": {
        "quick": ["--short", "5", "--long", "15", "--pg-short", "2", "--pg-long", "6"]
        + ["--rounds", "1"],
        "moderate": ["--short", "200", "--long", "1200", "--rounds", "5"]
        + ["--pg-short", "50", "--pg-long", "300"],
        "full": [],
    },
    "peers": {
        "quick": ["--short", "5", "--long", "15", "--rounds", "1", "--no-install"],
        "moderate": ["--short", "100", "--long", "600", "--rounds", "3"],
        "full": [],
    },
    "exports": {
        "quick": ["--rows", "500", "--rounds", "1"],
        "moderate": ["--rows", "200000", "--rounds", "3"],
        "full": [],
    },
    "logs_last": {
        "quick": ["--rows", "2000", "--baseline", "200", "--runs", "1"],
        "moderate": ["--rows", "200000", "--runs", "5"],
        "full": [],
    },
    "scale": {
        "quick": ["--rows", "3000", "--steps", "400", "--runs", "1"],
        "moderate": ["--rows", "200000", "--steps", "5000", "--runs", "3"],
        "full": [],
    },
    "first_rows": {
        "quick": ["--rows", "2000", "--rounds", "1"],
        "moderate": ["--rounds", "7"],
        "full": ["--rounds", "11"],
    },
    "tui_start": {
        "quick": ["--rows", "2000", "--rounds", "1"],
        "moderate": ["--rounds", "7"],
        "full": ["--rounds", "11"],
    },
}
# Scripts that take the measured interpreter (`--python`) or the venv (`--venv`).
TAKES_PYTHON = {"step_cost", "peers", "exports"}
TAKES_VENV = {"commands", "first_rows", "tui_start"}


def versions_line(python: str, peer_versions: dict[str, str]) -> str:
    versions = benchlib.package_versions(python, benchlib.FLOWCLI_LIBRARIES)
    versions.update(peer_versions)
    admin, why = benchlib.pg_admin()
    if admin is not None:
        versions["PostgreSQL"] = admin.execute("SHOW server_version").fetchone()[0].split()[0]
        admin.close()
    else:
        versions["PostgreSQL"] = f"none ({why})"
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _number(value: float, digits: int = 0) -> str:
    """200,000 / 1.33 / 1.2: thousands separated, small figures with their decimals."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if digits else f"{value:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("quick", "moderate", "full"), default="moderate")
    parser.add_argument("--only", help="comma-separated scripts (default: all)")
    parser.add_argument("--venv", help="measure the flowcli installed in this venv")
    parser.add_argument("--log-dir", help="where each script's report goes (default: a temp dir)")
    parser.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    args = parser.parse_args(argv)
    scripts = list(PLANS)
    if args.only:
        scripts = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(scripts) - set(PLANS)
        if unknown:
            parser.error(f"unknown scripts: {', '.join(sorted(unknown))}")

    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="flowcli-bench-logs-")).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flowcli-bench-build-"))
    # The tui extra (Textual) for tui_start.py; the other scripts never import it.
    extras = ("postgres", "tui") if "tui_start" in scripts else ("postgres",)
    install = benchlib.flowcli_install(
        args, work, log=lambda m: print(m, file=sys.stderr), extras=extras
    )
    venv = install.python.parent.parent
    python = str(install.python)

    gathered = []
    failed = []
    for name in scripts:
        results_file = log_dir / f"{name}.json"
        cmd = [python, str(HERE / f"{name}.py"), *PLANS[name][args.size]]
        cmd += ["--results", str(results_file)]
        if name in TAKES_PYTHON:
            cmd += ["--python", python]
        if name in TAKES_VENV:
            cmd += ["--venv", str(venv)]
        print(f"running {name} ({args.size}) ...", file=sys.stderr)
        start = time.perf_counter()
        with (log_dir / f"{name}.txt").open("w") as log:
            # cwd outside the checkout: `python -m flowcli` in a script must import the
            # installed wheel, not the source tree it would find in the current folder.
            code = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=benchlib.measured_env(), cwd=work
            ).returncode
        took = time.perf_counter() - start
        print(f"  {name}: exit {code} after {took:.0f}s", file=sys.stderr)
        if code != 0 or not results_file.exists():
            failed.append(name)
            continue
        gathered.append(json.loads(results_file.read_text()))

    peer_versions: dict[str, str] = {}
    for data in gathered:
        for key, value in data["versions"].items():
            if key not in ("flowcli", "sqlite"):
                peer_versions.setdefault(key, value)
    print(f"# flowcli benchmarks ({args.size} sizes)")
    print()
    print(f"- machine: {benchlib.machine_line()}")
    print(f"- measured flowcli: {install.how}")
    print(f"- versions: {versions_line(python, peer_versions)}")
    print(f"- each script's full report: {log_dir}/SCRIPT.txt")
    print()
    print("| script | what | measured | target | met | detail |")
    print("|---|---|---|---|---|---|")
    for data in gathered:
        for r in data["ratios"]:
            value = r["value"]
            shown = _number(value, digits=2)
            print(
                f"| {data['script']} | {r['what']} | {shown} | {r['op']} {_number(r['target'])} | "
                f"{'yes' if r['met'] else '**no**'} | {r['detail']} |"
            )
    notes = [f"{data['script']}: {note}" for data in gathered for note in data["notes"]]
    if notes:
        print()
        for note in notes:
            print(f"- {note}")
    for name in failed:
        print(f"- {name}: FAILED, see {log_dir / (name + '.txt')}")
    if args.json:
        Path(args.json).write_text(json.dumps(gathered, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
