"""SVG snapshots of the TUI at 80×24 and 120×40 (pytest-textual-snapshot): a layout change
shows up as a failed comparison with both pictures in the report. Update them on purpose
with `pytest tests/tui/test_snapshots.py --snapshot-update` and look at the result.

Deterministic by construction: one database built once and copied, every timestamp,
duration and memory figure set to fixed values, a fixed "now", no clock on screen.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowcli.engine.breakpoints import Breakpoints
from tests.conftest import Cli
from tests.helpers import new_session, run_sql
from tests.tui.pilot import make_app, session_screen_idle, wait_for, wait_for_text
from tests.tui.test_scenarios import FAILING_FLOW, FLOW

FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5)
FIXED_TIMES = {
    "sessions": ("created_at", "updated_at"),
    "messages": ("created_at",),
    "step_execution_logs": ("created_at", "started_at", "completed_at"),
}
STOPPED, FINISHED, FAILED = 1, 2, 3
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}


def _build(path: Path) -> None:
    cli = Cli(CliRunner(), path)
    assert new_session(cli, FLOW, "--var", "tone=calm") == STOPPED
    cli.ok("auto", str(STOPPED), "--quiet", "--break-at", "3")
    assert int(cli.json("session", "create", "--flow", "1", "--var", "tone=warm")["id"]) == 2
    cli.ok("auto", str(FINISHED), "--quiet")
    assert new_session(cli, FAILING_FLOW) == FAILED
    assert cli("auto", str(FAILED), "--quiet", "--retries", "0").exit_code == 1
    for table, columns in FIXED_TIMES.items():
        for column in columns:
            run_sql(path, f"UPDATE {table} SET {column} = '2026-01-02 03:00:00'")
    run_sql(path, "UPDATE sessions SET ended_at = '2026-01-02 03:00:01' WHERE ended_at IS NOT NULL")
    run_sql(path, "UPDATE step_execution_logs SET duration_ms = 12, memory_usage_mb = 48.5")
    # The failure's message names no process or path, but keep it short and fixed anyway.
    run_sql(
        path, "UPDATE sessions SET error_reason = 'step 2 failed after 1 attempt(s)' WHERE id = 3"
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snapshots") / "flowcli.db"
    _build(path)
    from tests.helpers import dispose_engines

    dispose_engines()
    return path


@pytest.fixture
def db(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("NO_COLOR", raising=False)  # snapshots in colour; one test without
    path = tmp_path / "flowcli.db"
    src, dst = sqlite3.connect(built), sqlite3.connect(path)
    src.backup(dst)
    src.close()
    dst.close()
    return path


def app_for(db: Path, **kwargs: Any) -> Any:
    # A long interval: the screens read once and then hold still for the picture.
    return make_app(db, now=lambda: FIXED_NOW, interval=60.0, **kwargs)


async def settle(pilot: Any) -> None:
    pilot.app.clear_notifications()
    await pilot.pause()


@pytest.mark.parametrize("size", list(SIZES))
def test_sessions_list(db: Path, snap_compare: Any, size: str) -> None:
    async def run_before(pilot: Any) -> None:
        await wait_for_text(pilot, "newest first")
        await settle(pilot)

    assert snap_compare(app_for(db), terminal_size=SIZES[size], run_before=run_before)


@pytest.mark.parametrize("size", list(SIZES))
def test_session_stopped_at_a_breakpoint(db: Path, snap_compare: Any, size: str) -> None:
    app = app_for(db, session_id=STOPPED)
    app.breakpoints[STOPPED] = Breakpoints.parse([3])

    async def run_before(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("r")  # stops at once, before step 3: nothing is written
        await wait_for_text(pilot, "■ stopped before step 3")
        if size == "120x40":
            await pilot.press("1")  # the selected execution in full
        await wait_for(pilot, lambda: session_screen_idle(app), "the panes")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


def test_failed_session_transcript(db: Path, snap_compare: Any) -> None:
    app = app_for(db, session_id=FAILED)

    async def run_before(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("3")
        await wait_for_text(pilot, "round 1")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZES["80x24"], run_before=run_before)


@pytest.mark.parametrize("size", list(SIZES))
def test_diff_of_two_marked_sessions(db: Path, snap_compare: Any, size: str) -> None:
    app = app_for(db)
    app.marked = [STOPPED, FINISHED]

    async def run_before(pilot: Any) -> None:
        await wait_for_text(pilot, "newest first")
        await pilot.press("d")
        await wait_for_text(pilot, "different")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


def test_keys_overlay(db: Path, snap_compare: Any) -> None:
    app = app_for(db, session_id=FINISHED)

    async def run_before(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("question_mark")
        await wait_for_text(pilot, "keys (esc closes)")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZES["80x24"], run_before=run_before)


def test_no_color(db: Path, snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for(db, session_id=FINISHED)

    async def run_before(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZES["80x24"], run_before=run_before)
