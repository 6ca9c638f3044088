"""Cold start: `flowcli --help` and `flowcli logs ID` against bare imports, same run.

    python benchmarks/cold_start.py            # 15 runs each, medians
    python benchmarks/cold_start.py --runs 3   # quick

Targets: `flowcli --help` ≤ 1.6 × `python -c "import typer, rich"`;
`flowcli logs ID` on a small database ≤ 1.5 × `python -c "import typer, rich, sqlalchemy"`.
It also reports which heavy modules each command imports (it must not import Alembic,
and --help must not import SQLAlchemy).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"


def timed(cmd: list[str], env: dict[str, str], runs: int) -> float:
    values = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        values.append(time.perf_counter() - start)
    return statistics.median(values)


def heavy_imports(cmd: list[str], env: dict[str, str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd[1:]],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    seen = set()
    for line in proc.stderr.splitlines():
        name = line.rsplit("|", 1)[-1].strip()
        top = name.split(".")[0]
        if top in ("sqlalchemy", "alembic", "pydantic", "yaml", "jinja2", "httpx", "simpleeval"):
            seen.add(top)
    return sorted(seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-cold-"))
    env = dict(os.environ, FLOWCLI_DB=str(tmp / "small.db"), COLUMNS="120")
    flowcli = [sys.executable, "-m", "flowcli"]
    try:
        subprocess.run([*flowcli, "demo"], check=True, capture_output=True, env=env)
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("import typer, rich", [sys.executable, "-c", "import typer, rich"]),
            (
                "import typer, rich, sqlalchemy",
                [sys.executable, "-c", "import typer, rich, sqlalchemy"],
            ),
            ("flowcli --help", [*flowcli, "--help"]),
            ("flowcli logs 1", [*flowcli, "logs", "1"]),
        ]
        times = {name: timed(cmd, env, args.runs) for name, cmd in rows}
        imports = {name: heavy_imports(cmd, env) for name, cmd in rows if "flowcli" in name}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"median of {args.runs} runs, Python {sys.version.split()[0]}")
    print(f"{'command':34s} {'ms':>7s}")
    for name, value in times.items():
        print(f"{name:34s} {value * 1000:7.1f}")
    help_ratio = times["flowcli --help"] / times["import typer, rich"]
    logs_ratio = times["flowcli logs 1"] / times["import typer, rich, sqlalchemy"]
    print(
        f"flowcli --help / import typer, rich           = {help_ratio:.2f} (target ≤ 1.6: "
        f"{'met' if help_ratio <= 1.6 else 'missed'})"
    )
    print(
        f"flowcli logs 1 / import typer, rich, sqlalchemy = {logs_ratio:.2f} (target ≤ 1.5: "
        f"{'met' if logs_ratio <= 1.5 else 'missed'})"
    )
    for name, mods in imports.items():
        print(f"{name}: imports {', '.join(mods) or 'none of the heavy modules'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
