"""The benchmark scripts run end to end at a tiny size (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, subprocess_env


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``benchmarks/SCRIPT`` with this interpreter, its output captured."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
    )


def test_logs_last_benchmark_runs_and_prints_a_ratio() -> None:
    result = run_script(
        "logs_last.py", "--rows", "2000", "--baseline", "200", "--runs", "1", timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowcli logs SESSION --last 50: median of 1 run(s)"
    assert [line.split()[0] for line in lines[2:4]] == ["200", "2,000"]
    assert [line.split()[1] for line in lines[2:4]] == ["100", "1,000"]
    assert lines[-2].startswith("ratio (2,000 / 200): command ")
    assert lines[-1].startswith("target: logs --last 50: whole command at 2,000 rows / at 200")
    assert "built 2,000 rows" in result.stderr


def test_logs_last_benchmark_rejects_sizes_below_last() -> None:
    result = run_script("logs_last.py", "--rows", "10", timeout=60)
    assert result.returncode == 2 and "at least 2 × --last" in result.stderr


@pytest.mark.slow
def test_step_cost_benchmark_runs_and_replays_flowcli_exactly(tmp_path: Path) -> None:
    # The script itself fails when the bare replay does not write what flowcli wrote,
    # or when flowcli did not run at the synchronous level the variant asks for.
    results = tmp_path / "step_cost.json"
    result = run_script(
        "step_cost.py",
        "--short",
        "4",
        "--long",
        "12",
        "--pg-short",
        "2",
        "--pg-long",
        "5",
        "--rounds",
        "1",
        "--results",
        str(results),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(results.read_text())
    measured = {r["what"]: r for r in data["ratios"]}
    assert {"sqlite normal step / bare replay", "sqlite full step / bare replay"} <= set(measured)
    assert measured["sqlite normal step / bare replay"]["target"] == 1.5
    assert measured["sqlite full step / bare replay"]["target"] == 1.3
    assert "postgres step / bare replay" in measured or any(
        n.startswith("postgres: skipped") for n in data["notes"]
    )
    assert "per step flowcli made" in result.stdout


@pytest.mark.slow
def test_commands_benchmark_runs_against_an_installed_flowcli(tmp_path: Path) -> None:
    # --venv: the test's own environment (building a wheel venv would need the network).
    results = tmp_path / "commands.json"
    result = run_script(
        "commands.py", "--rounds", "1", "--venv", sys.prefix, "--results", str(results), timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "bytecode (compileall): site-packages" in result.stdout
    data = json.loads(results.read_text())
    targets = {r["what"]: r["target"] for r in data["ratios"]}
    assert targets["`flowcli --help` / `import typer, rich`"] == 1.2
    for command in (
        "run-next 1",
        "explain 1",
        "session show 1",
        "session list",
        "logs 1 --last 50",
    ):
        assert targets[f"`flowcli {command}` / `import typer, rich`"] == 2.0
    help_line = next(
        line for line in result.stdout.splitlines() if line.startswith("flowcli --help")
    )
    assert "none" in help_line  # --help imports none of the heavy modules


@pytest.mark.slow
def test_peers_benchmark_runs_flowcli_and_each_installed_peer(tmp_path: Path) -> None:
    # --no-install: a peer is measured when its venv is already cached on this machine
    # and reported as skipped otherwise; either way every peer and case is accounted for.
    results = tmp_path / "peers.json"
    result = run_script(
        "peers.py",
        "--short",
        "3",
        "--long",
        "8",
        "--rounds",
        "1",
        "--no-install",
        "--results",
        str(results),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(results.read_text())
    measured = {r["what"] for r in data["ratios"]}
    for peer in ("Burr", "LangGraph"):
        skipped = any(n.startswith(f"{peer}: skipped") for n in data["notes"])
        cases = {f"{peer} step / flowcli step ({case} state)" for case in ("fixed", "growing")}
        assert skipped or cases <= measured, (peer, data)
    assert "fixed    flowcli" in result.stdout and "growing  flowcli" in result.stdout


def test_exports_benchmark_measures_flowcli_and_the_baselines(tmp_path: Path) -> None:
    results = tmp_path / "exports.json"
    result = run_script("exports.py", "--rows", "300", "--rounds", "1", "--results", str(results))
    assert result.returncode == 0, result.stderr
    data = json.loads(results.read_text())
    targets = {r["what"]: (r["op"], r["target"]) for r in data["ratios"]}
    for fmt in ("jsonl", "csv"):
        assert targets[f"flowcli logs --{fmt}: rows/s after start-up"] == (">=", 200_000)
        assert targets[f"flowcli logs --{fmt}: peak memory at 300 / at 30 rows"] == ("<=", 1.1)
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["python", "sqlite3", "jsonl"] in [r[:3] for r in rows]
    assert ["python", "sqlite3", "csv"] in [r[:3] for r in rows]


def test_scale_benchmark_runs() -> None:
    result = run_script("scale.py", "--rows", "3000", "--steps", "400", "--runs", "1")
    assert result.returncode == 0, result.stderr
    for needle in ("schema + state checks on 3,000 rows", "auto memory", "target: auto"):
        assert needle in result.stdout


def test_workers_benchmark_runs() -> None:
    result = run_script(
        "workers.py",
        "--sessions",
        "4",
        "--steps",
        "6",
        "--pg-workers",
        "1",
        "--sqlite-workers",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "sqlite" in result.stdout and "exactly once" in result.stdout
    assert " NO" not in result.stdout


def test_run_all_gathers_every_ratio_into_one_table(tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    result = run_script(
        "run_all.py",
        "--size",
        "quick",
        "--only",
        "logs_last",
        "--venv",
        sys.prefix,
        "--log-dir",
        str(tmp_path / "logs"),
        "--json",
        str(out),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# flowcli benchmarks (quick sizes)"
    assert any(line.startswith("- versions: flowcli ") for line in lines)
    assert "| script | what | measured | target | met | detail |" in lines
    rows = [line for line in lines if line.startswith("| logs_last |")]
    assert len(rows) == 1 and "| <= 1.2 |" in rows[0]
    assert [d["script"] for d in json.loads(out.read_text())] == ["logs_last"]
    assert "target: logs --last 50" in (tmp_path / "logs" / "logs_last.txt").read_text()


def test_where_benchmark_runs_and_counts_agree() -> None:
    result = run_script("where.py", "--sessions", "2000", "--runs", "1")
    assert result.returncode == 0, result.stderr
    assert "built 2,000 sessions" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("flowcli session count --where: 2,000 sessions, median of 1")
    assert sum(" = " in line for line in lines) == 3 and " != " not in result.stdout
    assert "sql+sandbox" in result.stdout and lines[-1].startswith("SQL-expressible selectors")


def test_prune_benchmark_runs() -> None:
    result = run_script("prune.py", "--rows", "600", "--per-session", "20", "--auto-steps", "20")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("flowcli db prune: 600 log rows (1,290 rows in all) in 30 sessions")
    assert "log rows/s" in lines[1] and "sessions, verified" in lines[1]
    assert lines[3].startswith("auto alone") and lines[4].startswith("auto during prune")
    assert lines[-1].startswith("longest wait of a concurrent step: ")
    assert "busy timeout 5,000 ms" in lines[-1]


def test_tui_start_benchmark_runs_and_prints_its_ratio(tmp_path: Path) -> None:
    results = tmp_path / "tui_start.json"
    result = run_script(
        "tui_start.py", "--here", "--rows", "2000", "--rounds", "1", "--results", str(results)
    )
    assert result.returncode == 0, result.stderr
    assert "flowcli tui: first frame" in result.stdout
    assert "flowcli tui: sessions listed" in result.stdout
    assert (
        'target: first frame of flowcli tui (2,000 rows) / `python -c "import textual"` <= 2:'
        in result.stdout
    )
    assert "built 2,000 rows" in result.stderr
    written = json.loads(results.read_text())
    [ratio] = written["ratios"]
    assert ratio["target"] == 2.0 and ratio["op"] == "<=" and ratio["value"] > 0
    # The sessions listed, beside the target: a ratio to the same baseline, no target.
    [listed] = written["notes"]
    assert listed.startswith('sessions listed (2,000 rows) / `python -c "import textual"`: ')
    assert listed in result.stdout


def test_first_rows_benchmark_runs_and_prints_its_ratios(tmp_path: Path) -> None:
    results = tmp_path / "first_rows.json"
    result = run_script(
        "first_rows.py", "--here", "--rows", "300", "--rounds", "1", "--results", str(results)
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "300 rows: median of 1 round(s)" in out.splitlines()[0]
    assert "load average (1, 5, 15 min): before " in out
    assert "WARNING" not in out  # every row reached the screen, none cut short
    for label in ("first row on the screen", "all rows on the screen", "`import typer, rich`"):
        assert any(line.startswith(label) and line.endswith(" s") for line in out.splitlines())
    assert "ratio first row / all rows: " in out
    assert "ratio first row / `import typer, rich`: " in out
    against_start_up, against_one_screen = json.loads(results.read_text())["ratios"]
    assert against_start_up["what"].startswith("logs of 300 rows: first row on screen / `import")
    assert against_one_screen["what"] == "logs of 300 rows: first row / first row of --last 40"
    assert against_start_up["value"] > 0 and against_one_screen["value"] > 0


def test_sandbox_cost_benchmark_runs_and_refuses_every_bomb() -> None:
    result = run_script("sandbox_cost.py", "--number", "50", "--repeat", "1")
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout
    assert "NOT REFUSED" not in result.stdout
