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


def test_step_cost_benchmark_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "step_cost.py"),
            "--short",
            "20",
            "--long",
            "60",
            "--repeat",
            "1",
            "--langgraph-python",
            sys.executable,
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "flowcli auto" in result.stdout and "× floor" in result.stdout
    assert "target: flowcli ≤ 5× floor:" in result.stdout


def test_cold_start_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "cold_start.py"), "--runs", "1"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "flowcli --help / import typer, rich" in result.stdout
    assert "flowcli --help: imports none of the heavy modules" in result.stdout


def test_scale_benchmark_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "scale.py"),
            "--rows",
            "3000",
            "--steps",
            "400",
            "--runs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for needle in ("exports", "peak MB", "schema + state checks, ratio", "auto memory"):
        assert needle in result.stdout


def test_workers_benchmark_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "workers.py"),
            "--sessions",
            "4",
            "--steps",
            "6",
            "--pg-workers",
            "1",
            "--sqlite-workers",
            "1",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "sqlite" in result.stdout and "exactly once" in result.stdout
    assert " NO" not in result.stdout
