"""benchmarks/sandbox_cost.py runs end to end at a tiny size (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT, subprocess_env


def test_sandbox_cost_benchmark_runs_and_refuses_every_bomb() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "sandbox_cost.py"),
            "--number",
            "50",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout
    assert "NOT REFUSED" not in result.stdout
