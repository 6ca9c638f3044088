"""The benchmark scripts run end to end at a tiny size (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT, subprocess_env


def test_logs_last_benchmark_runs_and_prints_a_ratio() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "logs_last.py"),
            "--rows",
            "2000",
            "--baseline",
            "200",
            "--runs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowcli logs SESSION --last 50: median of 1 run(s)"
    assert [line.split()[0] for line in lines[2:4]] == ["200", "2,000"]
    assert [line.split()[1] for line in lines[2:4]] == ["100", "1,000"]
    assert lines[-1].startswith("ratio (2,000 / 200): command ")
    assert "built 2,000 rows" in result.stderr


def test_logs_last_benchmark_rejects_sizes_below_last() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "logs_last.py"), "--rows", "10"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode == 2 and "at least 2 × --last" in result.stderr
