"""How soon the first rows of a 10,000-row `flowcli logs` are on the screen, through the
pager, against `python -c "import typer, rich"` measured in the same run.

    python benchmarks/first_rows.py                  # 10,000 rows, 7 alternating rounds
    python benchmarks/first_rows.py --rounds 3 --venv PATH
    python benchmarks/first_rows.py --here --rows 2000 --rounds 1   # the checkout, quick

A session of --rows executions (the demo session's rows, repeated) is built in a
temporary SQLite file. Each round then runs, in rotating order:

- `flowcli --db FILE logs 1` with stdout on a pseudo-terminal of 40 lines and 120
  columns, and `cat` as the pager (FLOWCLI_PAGER): flowcli starts the pager once a
  screenful is waiting, and `cat` puts what it is given on the terminal at once, so the
  script, reading the terminal, sees rows when a user would. It notes when the header
  and the first row have arrived (**first row**) and when the terminal closes (**all
  rows**);
- the same with `--last 40`, a screenful: its first row is the least a first screen
  can cost, with nothing behind it;
- `python -c "import typer, rich"`, the least any Typer + Rich CLI pays to start
  (**baseline**), and, for orientation, `import typer, rich, sqlalchemy`.

It prints the medians, the load average before and after, and the ratios. Targets:

- issue 15, "first rows on screen within a second for 10,000 rows": first row ≤ 10×
  the baseline, which is a second where the baseline takes 100 ms, as BENCHMARKS.md
  records for an idle machine (a busy machine slows both sides alike, so the ratio,
  not the seconds, is what compares);
- streaming: first row of 10,000 rows ≤ 1.2× first row of one screenful, i.e. the
  rows behind the first screen do not delay it (reading them all first would).

What runs is an ordinary install (a wheel of the working tree in a cached venv, or
`--venv`), as in commands.py; `--here` runs `python -m flowcli` with this interpreter
(the checkout, for a quick look: start-up is then slower than a user's).
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402 - a sibling module

BASELINE = "import typer, rich"
CONTEXT = "import typer, rich, sqlalchemy"
TARGET_RATIO = 10.0
TARGET_STREAMING = 1.2
LINES, COLUMNS = 40, 120
# A data row on the screen: the execution order, right-aligned, then the next cell
# (streamed lines, or a boxed table's rows, which start with `│`).
_ROW = re.compile("^(?:│)? *\\d+ ".encode(), re.MULTILINE)
_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


def build(flowcli: Sequence[str], db: Path, rows: int, env: dict[str, str]) -> None:
    """The demo's database, its session 1 grown to ``rows`` executions by repeating the
    demo session's own rows (their statuses, steps and snapshots) in order."""
    subprocess.run([*flowcli, "--db", str(db), "demo"], check=True, capture_output=True, env=env)
    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute("PRAGMA table_info(step_execution_logs)") if r[1] != "id"]
    templates = con.execute(
        f"SELECT {', '.join(cols)} FROM step_execution_logs WHERE session_id = 1 "
        "ORDER BY execution_order"
    ).fetchall()
    order = cols.index("execution_order")
    parent = cols.index("parent_log_id")
    start = len(templates) + 1
    batch = []
    for n in range(max(0, rows - len(templates))):
        row = list(templates[n % len(templates)])
        row[order] = start + n
        row[parent] = None
        batch.append(row)
    con.executemany(
        f"INSERT INTO step_execution_logs ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})",
        batch,
    )
    con.commit()
    con.close()


@dataclass
class Screen:
    first_row: float  # seconds from start until the header and a first row were shown
    all_rows: float  # seconds until the terminal closed (flowcli and the pager ended)
    rows_seen: int


def on_a_terminal(cmd: Sequence[str], env: dict[str, str]) -> Screen:
    """Run ``cmd`` with stdout on a pseudo-terminal; time what reaches the screen."""
    master, slave = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    first = None
    tail = b""
    seen = 0
    while True:
        select.select([master], [], [])
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        text = _ANSI.sub(b"", tail + chunk)
        # Count whole lines only; keep a partial last line for the next chunk.
        cut = text.rfind(b"\n") + 1
        seen += len(_ROW.findall(text[:cut]))
        tail = text[cut:]
        if first is None and seen:
            first = time.perf_counter() - start
    end = time.perf_counter() - start
    os.close(master)
    if proc.wait() != 0 or first is None:
        raise SystemExit(f"{' '.join(cmd)} failed or showed no rows (exit {proc.returncode})")
    return Screen(first, end, seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="executions in the session")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (median)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--venv", help="a venv with flowcli installed (default: build a wheel)")
    where.add_argument(
        "--here", action="store_true", help="run `python -m flowcli` with this interpreter"
    )
    benchlib.add_results_option(parser)
    args = parser.parse_args(argv)
    if args.rows < 100 or args.rounds < 1:
        parser.error("--rows must be at least 100 and --rounds at least 1")

    results = benchlib.Results("first_rows")
    work = Path(tempfile.mkdtemp(prefix="flowcli-first-rows-"))
    try:
        if args.here:
            python, how = sys.executable, "this checkout (python -m flowcli)"
            flowcli = [python, "-m", "flowcli"]
            env = dict(os.environ)
        else:
            install = benchlib.flowcli_install(args, work, log=lambda m: print(m, file=sys.stderr))
            python, flowcli = str(install.python), install.cmd()
            how = f"{install.how}; imported from {benchlib.installed_from(install)}"
            env = benchlib.measured_env()
        env.pop("TTY_COMPATIBLE", None)
        env.update(LINES=str(LINES), COLUMNS=str(COLUMNS), FLOWCLI_PAGER="cat")
        db = work / "big.db"
        build(flowcli, db, args.rows, env)

        screens: list[Screen] = []
        screenfuls: list[Screen] = []
        screenful = LINES  # a screen of rows: streamed, and paged, like the 10,000

        def logs() -> float:
            screens.append(on_a_terminal([*flowcli, "--db", str(db), "logs", "1"], env))
            return screens[-1].first_row

        def one_screen() -> float:
            cmd = [*flowcli, "--db", str(db), "logs", "1", "--last", str(screenful)]
            screenfuls.append(on_a_terminal(cmd, env))
            return screenfuls[-1].first_row

        runners = {
            "flowcli logs 1": logs,
            "flowcli logs 1 --last N": one_screen,
            BASELINE: lambda: benchlib.timed_process([python, "-c", BASELINE], env=env),
            CONTEXT: lambda: benchlib.timed_process([python, "-c", CONTEXT], env=env),
        }
        load_before = os.getloadavg()
        times = benchlib.alternate(runners, args.rounds, label="first rows")
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # A row whose order is cut short (`100…`) is not counted: the screen lost it.
    wrong = sorted({s.rows_seen for s in screens if s.rows_seen != args.rows})
    wrong += sorted({s.rows_seen for s in screenfuls if s.rows_seen != screenful})
    first = benchlib.median([s.first_row for s in screens])
    whole = benchlib.median([s.all_rows for s in screens])
    least = benchlib.median([s.first_row for s in screenfuls])
    base = benchlib.median(times[BASELINE])
    context = benchlib.median(times[CONTEXT])
    print(
        f"flowcli logs 1 on a {LINES}x{COLUMNS} terminal, pager `cat`, {args.rows:,} rows: "
        f"median of {args.rounds} round(s)"
    )
    print(f"machine: {benchlib.machine_line()}")
    print(f"flowcli: {how}")
    print(
        "load average (1, 5, 15 min): "
        f"before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    if wrong:
        results.note(
            f"WARNING: {args.rows:,} and {screenful} rows expected on the screen, saw {wrong}"
        )
    print(f"first row on the screen      {first:7.3f} s")
    print(f"all rows on the screen       {whole:7.3f} s")
    print(f"first row of --last {screenful}      {least:7.3f} s  (one screenful)")
    print(f"`{BASELINE}`           {base:7.3f} s")
    print(f"`{CONTEXT}`   {context:7.3f} s  (for orientation)")
    print(f"ratio first row / all rows: {benchlib.ratio(first, whole):.2f}")
    print(
        f"ratio first row / `{BASELINE}`: {benchlib.ratio(first, base):.2f} "
        f"(on a machine where it takes 100 ms: {benchlib.ratio(first, base) * 0.1:.2f} s)"
    )
    results.add(
        benchlib.Ratio(
            f"logs of {args.rows:,} rows: first row on screen / `{BASELINE}`",
            benchlib.ratio(first, base),
            TARGET_RATIO,
            detail=f"{first * 1000:.0f} vs {base * 1000:.0f} ms; all rows {whole * 1000:.0f} ms",
        )
    )
    results.add(
        benchlib.Ratio(
            f"logs of {args.rows:,} rows: first row / first row of --last {screenful}",
            benchlib.ratio(first, least),
            TARGET_STREAMING,
            detail=f"{first * 1000:.0f} vs {least * 1000:.0f} ms",
        )
    )
    results.write(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
