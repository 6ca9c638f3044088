"""How soon does `flowcli tui` show its first frame, against `python -c "import textual"`?

Builds a temporary SQLite database of --rows step execution logs (100,000 by default,
with logs_last.py's builder: half of them in session 1, the rest over ~50 sessions),
then starts the real command in a pseudo-terminal of 120×40, as a user's terminal runs
it, and times from the start of the process to

- the first frame: the screen's first paint (its filter bar is on the terminal);
- the data: the sessions list filled ("newest first"), or session 1's debugger
  (its head line) for `flowcli tui 1`;

then types q and waits for the process to end. The baseline, `python -c "import textual"`,
is timed in the same run (median of --runs each). Target: the first frame of
`flowcli tui` within 2× the baseline.

    python benchmarks/tui_start.py                 # 100,000 rows, 7 runs
    python benchmarks/tui_start.py --rows 2000 --runs 1   # quick (CI smoke test)
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from logs_last import build  # noqa: E402 - the sibling script's builder

TARGET_RATIO = 2.0
FIRST_FRAME = b"status: all (s)"
DEADLINE_S = 120.0
# The floor for any Textual program: a one-widget app, showing the same marker.
MINIMAL_APP = (
    "from textual.app import App\n"
    "from textual.widgets import Static\n"
    "class Minimal(App):\n"
    "    def compose(self):\n"
    "        yield Static('status: all (s) newest first')\n"
    "Minimal().run()\n"
)


def timed_run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def tui_run(cmd: list[str], env: dict[str, str], data_marker: bytes) -> tuple[float, float]:
    """Seconds to the first frame and to the data, for one start in a pseudo-terminal."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
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
            chunk = os.read(controller, 65536)
            if not chunk:
                raise SystemExit(f"the app ended early: {bytes(seen[-500:])!r}")
            seen.extend(chunk)
            now = time.perf_counter() - start
            if first is None and FIRST_FRAME in seen:
                first = now
            if first is not None and data_marker in seen:
                data = now
        # q backs out of a session screen, q quits; ctrl+q quits the minimal app.
        os.write(controller, b"qqq\x11")
        while True:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    if not os.read(controller, 65536):
                        break
                except OSError:
                    break
            if proc.poll() is not None:
                break
        proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    return first, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="step execution log rows")
    parser.add_argument("--runs", type=int, default=7, help="starts of each command")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flowcli-tui-"))
    try:
        db = tmp / "tui.db"
        t0 = time.perf_counter()
        build(db, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        env = dict(os.environ, TERM="xterm-256color")
        for key in ("COLUMNS", "LINES", "NO_COLOR", "FLOWCLI_DB"):
            env.pop(key, None)
        flowcli = [sys.executable, "-m", "flowcli", "--db", str(db), "tui"]
        textual = [sys.executable, "-c", "import textual"]
        shown = b"session 1 \xc2\xb7 bench"
        baseline: list[float] = []
        minimal: list[tuple[float, float]] = []
        lists: list[tuple[float, float]] = []
        sessions: list[tuple[float, float]] = []
        # Round-robin, so a machine that gets busier or quieter affects every command alike.
        for _ in range(args.runs):
            baseline.append(timed_run(textual, env))
            minimal.append(tui_run([sys.executable, "-c", MINIMAL_APP], env, b"newest first"))
            lists.append(tui_run(flowcli, env, b"newest first"))
            sessions.append(tui_run([*flowcli, "1"], env, shown))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(baseline)
    rows = [
        ('python -c "import textual"', base),
        ("a one-widget Textual app: first frame", statistics.median(r[0] for r in minimal)),
        ("flowcli tui: first frame", statistics.median(r[0] for r in lists)),
        ("flowcli tui: sessions listed", statistics.median(r[1] for r in lists)),
        ("flowcli tui 1: first frame", statistics.median(r[0] for r in sessions)),
        ("flowcli tui 1: session shown", statistics.median(r[1] for r in sessions)),
    ]
    python = sys.version.split()[0]
    print(f"{args.rows:,}-row database; median of {args.runs} run(s); Python {python}")
    print(f"{'':38s} {'ms':>8s} {'× import textual':>17s}")
    for name, value in rows:
        print(f"{name:38s} {value * 1000:8.1f} {value / base:16.2f}×")
    ratio = rows[2][1] / base
    floor = rows[2][1] / rows[1][1]
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    print(f"first frame of flowcli tui / a one-widget Textual app: {floor:.2f}×")
    print(
        f"target: first frame of flowcli tui ≤ {TARGET_RATIO:g}× import textual: "
        f"{verdict} ({ratio:.2f}×)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
