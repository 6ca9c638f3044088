"""Whole-process start-up: one-shot commands against `python -c "import typer, rich"`.

    python benchmarks/commands.py                 # 11 alternating rounds, medians
    python benchmarks/commands.py --rounds 3      # quick
    python benchmarks/commands.py --venv PATH     # measure the flowcli installed in PATH

A user types `flowcli run-next 1` and waits for one process. This times that process
for `run-next`, `explain`, `session show`, `session list`, `logs --last 50` (on a small
SQLite `./flowcli.db` in the working folder) and `--help`, each beside the baseline
`python -c "import typer, rich"` (the least any Typer+Rich CLI pays), in alternating
rounds; it prints the median of each and its ratio to the baseline's median.
Targets: every command ≤ 2.0×, `--help` ≤ 1.2×.

What runs is an ordinary install, not the development checkout: by default a wheel of
the working tree is built and installed (not editable) into a venv cached under
~/.cache/flowcli-bench, or `--venv` names one. An editable install adds an import
finder to every start, and PYTHONDONTWRITEBYTECODE=1 (set in this environment) with
no bytecode on disk would recompile every module on every start: so the venv's
site-packages is byte-compiled (compileall), the output says how much of it and of
the standard library has bytecode and whether every module `run-next` imports has its
bytecode on disk, and the measured processes run without PYTHONDONTWRITEBYTECODE,
PYTHONPATH or PYTHONSTARTUP.

It also prints which heavy modules each command imports (sqlalchemy, alembic, jinja2,
httpx, pydantic, yaml), with their cumulative import time from one
`python -X importtime` run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - a sibling module

HEAVY = ("sqlalchemy", "alembic", "jinja2", "httpx", "pydantic", "yaml")
BASELINE = "import typer, rich"
COMMANDS = {
    "flowcli --help": (["--help"], 1.2),
    "flowcli run-next 1": (["run-next", "1"], 2.0),
    "flowcli explain 1": (["explain", "1"], 2.0),
    "flowcli session show 1": (["session", "show", "1"], 2.0),
    "flowcli session list": (["session", "list"], 2.0),
    "flowcli logs 1 --last 50": (["logs", "1", "--last", "50"], 2.0),
}
# Shown for orientation, not compared with a target.
CONTEXT = {
    "python -c pass": "pass",
    "import typer, rich, sqlalchemy": "import typer, rich, sqlalchemy",
}


# Runs a console script and, at exit, lists the imported source modules whose bytecode
# is not on disk (each of those would be compiled again on every start).
BYTECODE_CHECK = """
import atexit, os, runpy, sys
def report():
    total, missing = 0, []
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.has_location or not str(spec.origin).endswith(".py"):
            continue
        total += 1
        if not spec.cached or not os.path.exists(spec.cached):
            missing.append(module.__name__)
    sys.stderr.write("BYTECODE %d %s\\n" % (total, " ".join(sorted(missing))))
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def bytecode_of_imports(
    install: benchlib.FlowcliInstall, argv: list[str], cwd: Path, env: dict[str, str]
) -> str:
    """Whether every module the command imports has its bytecode on disk."""
    done = subprocess.run(
        [str(install.python), "-c", BYTECODE_CHECK, str(install.script), *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )
    line = next((x for x in done.stderr.splitlines() if x.startswith("BYTECODE ")), "")
    if not line:
        return "could not check"
    _, total, *missing = line.split()
    if not missing:
        return f"all {total} source modules it imports have bytecode on disk"
    return f"{len(missing)} of {total} imported modules lack bytecode: {', '.join(missing[:8])}"


def heavy_imports(python: Path, argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """'sqlalchemy 310 ms, jinja2 40 ms' from one `-X importtime` run, or 'none'."""
    done = subprocess.run(
        [str(python), "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )
    cumulative: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        name = parts[-1].strip()
        if name in HEAVY:
            try:
                micros = int(parts[1].strip())
            except ValueError:
                continue
            cumulative[name] = max(cumulative.get(name, 0), micros)
    if not cumulative:
        return "none"
    return ", ".join(
        f"{name} {us / 1000:.0f} ms" for name, us in sorted(cumulative.items(), key=lambda i: -i[1])
    )


def prepare(install: benchlib.FlowcliInstall, work: Path, env: dict[str, str]) -> None:
    """./flowcli.db in ``work``: a loop flow, three sessions, 100 executions in session 1."""
    flow = benchlib.loop_flow(work / "bench.yaml")
    run = {"cwd": work, "env": env, "check": True, "capture_output": True}
    subprocess.run(install.cmd("flow", "import", str(flow)), **run)  # type: ignore[call-overload]
    for _ in range(3):
        subprocess.run(  # type: ignore[call-overload]
            install.cmd("session", "create", "--flow", "1", "--topic", benchlib.KB_TOPIC), **run
        )
    subprocess.run(install.cmd("auto", "1", "--max-steps", "100", "-q"), **run)  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="alternating rounds (median)")
    parser.add_argument(
        "--venv", help="a venv with flowcli installed (default: build a wheel into a cached one)"
    )
    benchlib.add_results_option(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    results = benchlib.Results("commands")
    work = Path(tempfile.mkdtemp(prefix="flowcli-commands-"))
    try:
        install = benchlib.flowcli_install(args, work, log=lambda m: print(m, file=sys.stderr))
        env = benchlib.measured_env({"COLUMNS": "120"})
        where = benchlib.installed_from(install)
        folder = work / "data"
        folder.mkdir()
        prepare(install, folder, env)

        print('whole-process start-up, one-shot commands vs `python -c "import typer, rich"`')
        print(f"machine: {benchlib.machine_line()}")
        print(f"flowcli: {install.how}; imported from {where}")
        if "site-packages" not in where:
            print("WARNING: flowcli is not imported from site-packages (editable install?)")
        print(f"bytecode (compileall): {benchlib.bytecode_coverage(install.python)}")
        print(
            "measured without PYTHONDONTWRITEBYTECODE/PYTHONPATH/PYTHONSTARTUP; "
            "SQLite database ./flowcli.db with 3 sessions, 100 executions"
        )

        print(
            "bytecode, `flowcli run-next 1`: "
            + bytecode_of_imports(install, ["run-next", "1"], folder, env)
        )

        python = str(install.python)
        runners = {
            BASELINE: lambda: benchlib.timed_process([python, "-c", BASELINE], env=env, cwd=folder)
        }
        for name, code in CONTEXT.items():
            runners[name] = lambda code=code: benchlib.timed_process(  # type: ignore[misc]
                [python, "-c", code], env=env, cwd=folder
            )
        for name, (cmd_args, _target) in COMMANDS.items():
            runners[name] = lambda cmd_args=cmd_args: benchlib.timed_process(  # type: ignore[misc]
                install.cmd(*cmd_args), env=env, cwd=folder
            )
        times = benchlib.alternate(runners, args.rounds, label="commands")
        medians = {name: benchlib.median(values) for name, values in times.items()}
        imports = {
            name: heavy_imports(install.python, [str(install.script), *cmd_args], folder, env)
            for name, (cmd_args, _target) in COMMANDS.items()
        }
        versions = benchlib.package_versions(python, benchlib.FLOWCLI_LIBRARIES)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = medians[BASELINE]
    print(f"median of {args.rounds} round(s); ratio = command / `{BASELINE}`")
    print(f"{'command':28s} {'ms':>7s} {'ratio':>6s} {'target':>7s}  heavy modules imported")
    for name in (BASELINE, *CONTEXT):
        print(f"{name:28s} {medians[name] * 1000:7.1f} {medians[name] / base:6.2f}")
    for name, (_args, target) in COMMANDS.items():
        value = medians[name] / base
        verdict = "met" if value <= target else "MISSED"
        print(
            f"{name:28s} {medians[name] * 1000:7.1f} {value:6.2f} "
            f"{'≤ ' + format(target, 'g'):>7s}  {imports[name]} [{verdict}]"
        )
    for name, (_args, target) in COMMANDS.items():
        results.add(
            benchlib.Ratio(
                f"`{name}` / `{BASELINE}`",
                medians[name] / base,
                target,
                detail=(
                    f"{medians[name] * 1000:.0f} vs {base * 1000:.0f} ms; imports {imports[name]}"
                ),
            )
        )
    results.versions = versions
    results.write(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
