#!/usr/bin/env python3
"""Run the test suite K times in a row on a machine kept busy by N CPU-bound processes.

    python scripts/stress_suite.py [--busy 4] [--runs 3] [-- PYTEST ARGS…]

The README's test command (``pytest``, here ``python -m pytest -q -p no:cacheprovider``
unless other arguments follow ``--``) runs ``--runs`` times while ``--busy`` busy-loop
processes compete for the CPU (default: twice the CPUs, so the suite gets a fraction of
the machine). A test that depends on timing rather than on conditions fails here. Prints
one line per run and a summary; exits 0 only if every run passed. RELIABILITY.md says
what was run and what came out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUSY_LOOP = "while True:\n    pass\n"
DEFAULT_PYTEST = ["-q", "-p", "no:cacheprovider"]


def start_busy_loops(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", BUSY_LOOP],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        proc.kill()  # each one by its own pid: only the processes this script started
    for proc in processes:
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--busy",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="busy-loop processes to run alongside (default: twice the CPUs)",
    )
    parser.add_argument("--runs", type=int, default=3, help="times to run the suite")
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep each run's output here (default: none)"
    )
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args()
    pytest_args = args.pytest_args or DEFAULT_PYTEST
    command = [sys.executable, "-m", "pytest", *pytest_args]
    print(f"busy loops: {args.busy} on {os.cpu_count()} CPUs; runs: {args.runs}", flush=True)
    print(f"command: {' '.join(command)}", flush=True)
    busy = start_busy_loops(args.busy)
    results: list[tuple[int, float]] = []
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            elapsed = time.monotonic() - started
            results.append((proc.returncode, elapsed))
            tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
            print(f"run {run}: exit {proc.returncode} in {elapsed:.0f} s: {tail}", flush=True)
            if args.log_dir is not None:
                args.log_dir.mkdir(parents=True, exist_ok=True)
                (args.log_dir / f"run-{run}.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0 and args.log_dir is None:
                print(proc.stdout[-5000:], flush=True)
    finally:
        stop(busy)
    passed = sum(1 for code, _ in results if code == 0)
    print(f"{passed} of {len(results)} runs passed", flush=True)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
