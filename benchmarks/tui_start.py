"""How soon does `flowcli tui` show its first frame, against `python -c "import textual"`?

Builds a temporary SQLite database of --rows step execution logs (100,000 by default,
with logs_last.py's builder: half of them in session 1, the rest over ~50 sessions).
Then, in alternating rounds (the order rotates each round, benchlib.alternate), it times

- `python -c "import textual"`: the target's baseline;
- a one-widget Textual app's first frame: the floor for any Textual program;
- `flowcli tui`: from the start of the process to its first frame (the sessions
  screen's filter line is on the terminal) and to the data (the sessions listed);
- `flowcli tui 1`: the first frame, and session 1's debugger shown (its head line).

Each app runs in a pseudo-terminal of 120x40 as a user's terminal runs it, through the
installed `flowcli` console script, and is timed when the frame's bytes reach the
terminal; then q is typed and the process waited for. A headless run (Textual's
`run_test`, `App.run(headless=True)`) would leave out the terminal driver and the
writing of the frame, part of what a user waits for, and would need a hook in the app;
reading the terminal needs neither. One unmeasured round first writes any bytecode.

Target (issue 18): the first frame of `flowcli tui` within 2x the baseline.

    python benchmarks/tui_start.py                        # a wheel of the checkout, 7 rounds
    python benchmarks/tui_start.py --venv PATH            # the flowcli installed in PATH
    python benchmarks/tui_start.py --here --rows 2000 --rounds 1   # this checkout, quick
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402 - a sibling module
from logs_last import build  # noqa: E402 - the sibling script's builder

TARGET_RATIO = 2.0
BASELINE = 'python -c "import textual"'
# The sessions screen's filter line: on its first frame, before any read.
FIRST_FRAME = b"status: all (s)"
SESSIONS_LISTED = b"newest first"
SESSION_SHOWN = b"session 1 \xc2\xb7 bench"
COLUMNS, LINES = 120, 40
DEADLINE_S = 120.0
# The floor for any Textual program: a one-widget app, showing the same markers.
MINIMAL_APP = (
    "from textual.app import App\n"
    "from textual.widgets import Static\n"
    "class Minimal(App):\n"
    "    def compose(self):\n"
    "        yield Static('status: all (s) newest first')\n"
    "Minimal().run()\n"
)


@dataclass
class Start:
    first_frame: float
    data: float


def on_a_terminal(cmd: list[str], env: dict[str, str], data_marker: bytes) -> Start:
    """Seconds to the first frame and to the data, for one start in a pseudo-terminal."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True
    )
    os.close(terminal)
    seen = bytearray()
    first = data = None
    try:
        while data is None:
            remaining = DEADLINE_S - (time.perf_counter() - start)
            if remaining <= 0:
                raise SystemExit(f"no data on screen after {DEADLINE_S}s: {bytes(seen[-500:])!r}")
            ready, _, _ = select.select([controller], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process ended
                chunk = b""
            if not chunk:
                raise SystemExit(f"{cmd[-1]} ended early: {bytes(seen[-500:])!r}")
            seen.extend(chunk)
            now = time.perf_counter() - start
            if first is None and FIRST_FRAME in seen:
                first = now
            if first is not None and data_marker in seen:
                data = now
        # q backs out of a session screen, q quits; ctrl+q quits the minimal app.
        os.write(controller, b"qqq\x11")
        deadline = time.perf_counter() + DEADLINE_S
        while proc.poll() is None and time.perf_counter() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    if not os.read(controller, 65536):
                        break
                except OSError:
                    break
        proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    return Start(first, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="step execution log rows")
    parser.add_argument(
        "--rounds", "--runs", type=int, default=7, help="alternating rounds (median)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--venv", help="a venv with flowcli[tui] installed (default: a wheel)")
    where.add_argument(
        "--here", action="store_true", help="run `python -m flowcli` with this interpreter"
    )
    benchlib.add_results_option(parser)
    args = parser.parse_args(argv)
    if args.rows < 100 or args.rounds < 1:
        parser.error("--rows must be at least 100 and --rounds at least 1")

    results = benchlib.Results("tui_start")
    work = Path(tempfile.mkdtemp(prefix="flowcli-tui-"))
    try:
        if args.here:
            python, how = sys.executable, "this checkout (python -m flowcli)"
            flowcli = [python, "-m", "flowcli"]
        else:
            install = benchlib.flowcli_install(
                args,
                work,
                log=lambda m: print(m, file=sys.stderr),
                extras=("postgres", "tui"),
            )
            python, flowcli = str(install.python), install.cmd()
            how = f"{install.how}; imported from {benchlib.installed_from(install)}"
        if subprocess.run([python, "-c", "import textual"], capture_output=True).returncode:
            raise SystemExit(f"{python} has no Textual: install flowcli[tui] there")
        # As a user's shell starts it: bytecode written and used, no PYTHONPATH.
        env = benchlib.measured_env({"TERM": "xterm-256color"})
        for key in ("COLUMNS", "LINES", "NO_COLOR", "FLOWCLI_DB", "TEXTUAL"):
            env.pop(key, None)
        db = work / "tui.db"
        t0 = time.perf_counter()
        build(db, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        tui = [*flowcli, "--db", str(db), "tui"]
        lists: list[Start] = []
        sessions: list[Start] = []
        minimal: list[Start] = []

        def sessions_list() -> float:
            lists.append(on_a_terminal(tui, env, SESSIONS_LISTED))
            return lists[-1].first_frame

        def session_one() -> float:
            sessions.append(on_a_terminal([*tui, "1"], env, SESSION_SHOWN))
            return sessions[-1].first_frame

        def one_widget_app() -> float:
            minimal.append(on_a_terminal([python, "-c", MINIMAL_APP], env, SESSIONS_LISTED))
            return minimal[-1].first_frame

        runners = {
            "flowcli tui": sessions_list,
            "flowcli tui 1": session_one,
            "one-widget app": one_widget_app,
            BASELINE: lambda: benchlib.timed_process([python, "-c", "import textual"], env=env),
        }
        benchlib.alternate(runners, 1, label="warm-up (not counted)")
        for started in (lists, sessions, minimal):
            started.clear()
        load_before = os.getloadavg()
        times = benchlib.alternate(runners, args.rounds, label="tui start")
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = benchlib.median(times[BASELINE])
    rows = [
        (BASELINE, base),
        ("a one-widget Textual app: first frame", benchlib.median(times["one-widget app"])),
        ("flowcli tui: first frame", benchlib.median([s.first_frame for s in lists])),
        ("flowcli tui: sessions listed", benchlib.median([s.data for s in lists])),
        ("flowcli tui 1: first frame", benchlib.median([s.first_frame for s in sessions])),
        ("flowcli tui 1: session shown", benchlib.median([s.data for s in sessions])),
    ]
    print(
        f"flowcli tui on a {COLUMNS}x{LINES} pseudo-terminal, {args.rows:,}-row database: "
        f"median of {args.rounds} alternating round(s)"
    )
    print(f"machine: {benchlib.machine_line()}")
    print(f"flowcli: {how}")
    print(
        "load average (1, 5, 15 min): "
        f"before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"{'':38s} {'ms':>8s} {'x import textual':>17s}")
    for name, value in rows:
        print(f"{name:38s} {value * 1000:8.1f} {benchlib.ratio(value, base):16.2f}x")
    first = rows[2][1]
    print(
        "first frame of flowcli tui / a one-widget Textual app: "
        f"{benchlib.ratio(first, rows[1][1]):.2f}x"
    )
    results.add(
        benchlib.Ratio(
            f"first frame of flowcli tui ({args.rows:,} rows) / `{BASELINE}`",
            benchlib.ratio(first, base),
            TARGET_RATIO,
            detail=(
                f"{first * 1000:.0f} vs {base * 1000:.0f} ms; sessions listed "
                f"{rows[3][1] * 1000:.0f} ms; one-widget app {rows[1][1] * 1000:.0f} ms"
            ),
        )
    )
    results.write(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
