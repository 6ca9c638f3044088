"""The TUI next to other processes: it follows a concurrent `flowcli auto`, stays answering
keys while a step is in flight or the database is locked, stops its own run after the
current step on Ctrl-C, shows hostile stored text escaped, respects NO_COLOR, and works on
MRC's own database (which MRC can still read afterwards)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowcli.engine.responders import ResponderOptions
from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env
from tests.helpers import logs, new_session, run_sql, session_row, step_orders
from tests.llm_server import Behaviour, FakeLLM
from tests.tui.pilot import (
    DEADLINE_S,
    make_app,
    run,
    screen_text,
    session_screen_idle,
    wait_for,
    wait_for_text,
)
from tests.tui.test_scenarios import ALL_ORDERS, FLOW

# Each test runs other processes (flowcli auto, a lock holder, MRC's server) next to the app.
pytestmark = pytest.mark.slow

GATE_TIMEOUT_S = 120.0


class GatedLLM(FakeLLM):
    """The fake LLM, answering a request only when the test lets one through."""

    def __init__(self) -> None:
        super().__init__()
        self._gate = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.arrived = 0

    def _next(self) -> Behaviour:
        with self._lock:
            self.arrived += 1
        if not self._gate.acquire(timeout=GATE_TIMEOUT_S):
            return Behaviour(kind="status", status=503)
        return super()._next()

    def let_through(self, count: int = 1) -> None:
        for _ in range(count):
            self._gate.release()


@pytest.fixture
def gated_llm() -> Any:
    server = GatedLLM().start()
    yield server
    server.let_through(100)  # nothing stays blocked on the way out
    server.stop()


def llm_args(server: FakeLLM) -> list[str]:
    return [
        "--responder",
        "openai",
        "--llm-base-url",
        server.base_url,
        "--llm-model",
        "m",
        "--llm-timeout",
        str(GATE_TIMEOUT_S),
        "--llm-retries",
        "0",
        "--retries",
        "0",
    ]


def tree_size(app: Any) -> int:
    from flowcli.tui.screens.session import LogTree

    return len(app.screen.query_one(LogTree).nodes) if hasattr(app.screen, "head") else -1


def test_follows_a_concurrent_auto_and_keeps_answering_keys(
    db_path: Path, cli: Cli, gated_llm: GatedLLM, tmp_path: Path
) -> None:
    sid = new_session(cli, FLOW)
    app = make_app(db_path, session_id=sid)
    proc: subprocess.Popen[str] | None = None

    async def scenario(pilot: Any) -> None:
        nonlocal proc
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        proc = subprocess.Popen(
            [*flowcli_subprocess_cmd(), "--db", str(db_path), "auto", str(sid), "--quiet"]
            + llm_args(gated_llm),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
            cwd=tmp_path,
        )
        # The other process has claimed step 1 and waits for the model: the app says so.
        await wait_for_text(pilot, "#1 in flight")
        # …and still answers keys.
        await pilot.press("question_mark")
        await wait_for_text(pilot, "keys (esc closes)")
        await pilot.press("escape")
        await wait_for(pilot, lambda: "keys (esc closes)" not in screen_text(app), "help closed")
        for done in range(1, 4):
            gated_llm.let_through()
            await wait_for(pilot, lambda done=done: tree_size(app) == done, f"{done} row(s)")
            await wait_for_text(pilot, f"#{done + 1} in flight")
            assert proc.poll() is None  # the other process is still running the session
        gated_llm.let_through(len(ALL_ORDERS) - 3)
        await wait_for(pilot, lambda: tree_size(app) == len(ALL_ORDERS), "every row")
        await wait_for_text(pilot, "✓ finished")

    try:
        run(app, scenario)
        assert proc is not None
        out, err = proc.communicate(timeout=120)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert step_orders(logs(db_path, sid)) == ALL_ORDERS
    assert session_row(db_path, sid)["status"] == "finished"


def test_ctrl_c_stops_the_apps_run_after_the_current_step(
    db_path: Path, cli: Cli, gated_llm: GatedLLM
) -> None:
    sid = new_session(cli, FLOW)
    options = ResponderOptions(
        kind="openai",
        base_url=gated_llm.base_url,
        model="m",
        timeout=GATE_TIMEOUT_S,
        llm_retries=0,
    )
    app = make_app(db_path, session_id=sid, options=options)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("r")
        await wait_for_text(pilot, "#1 in flight")
        await pilot.press("ctrl+c")
        await wait_for_text(pilot, "stopping after the current step")
        assert app.run_in_progress is not None and app.run_in_progress.stop_requested
        gated_llm.let_through()
        await wait_for_text(pilot, "‖ stopped after the current step, as asked · 1 step(s) run")
        assert gated_llm.arrived == 1  # no second step was started
        await pilot.press("ctrl+c")  # idle: ctrl+c quits
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")

    run(app, scenario)
    assert step_orders(logs(db_path, sid)) == [1]
    row = session_row(db_path, sid)
    assert row["status"] == "running" and row["lease_owner"] is None


# Prints "locked" once it holds the lock, or "busy" (and ends) when a connection of the
# app's was still open: a refresh in a worker thread may open one at any moment.
HOLD_EXCLUSIVE = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=1)
con.execute("PRAGMA locking_mode=EXCLUSIVE")
try:
    con.execute("BEGIN EXCLUSIVE")
    con.execute("UPDATE sessions SET topic = topic")
except sqlite3.OperationalError:
    print("busy", flush=True)
    sys.exit(0)
print("locked", flush=True)
sys.stdin.readline()
con.rollback()
con.close()
"""


def test_a_locked_database_is_reported_and_retried_without_freezing(
    db_path: Path, cli: Cli
) -> None:
    sid = new_session(cli, FLOW)
    cli.ok("run-next", str(sid))
    app = make_app(db_path, session_id=sid)
    holder: subprocess.Popen[str] | None = None

    async def scenario(pilot: Any) -> None:
        nonlocal holder
        # A WAL reader is never blocked by a writer, only by a lock taken in exclusive
        # locking mode, which needs every other connection closed first: the app's pooled
        # ones are closed here, and its next read opens a new one into the held lock. A
        # refresh running in a worker may reopen one before the holder gets there; then
        # the holder gives up and the test tries again, until a deadline.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
            app.read_db.dispose()
            app.db.dispose()
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLD_EXCLUSIVE, str(db_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert holder.stdout is not None
            answer = holder.stdout.readline().strip()
            if answer == "locked":
                break
            assert answer == "busy", f"the lock holder said {answer!r}"
            holder.wait(timeout=60)
            assert time.monotonic() < deadline, "the app never closed its connections"
        text = await wait_for_text(pilot, "(retrying)")
        assert "locked" in text or "busy" in text
        await pilot.press("2")  # the app answers keys all the while
        await wait_for(
            pilot,
            lambda: app.screen.query_one("TabbedContent").active == "explain",
            "the explain pane",
        )
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        await wait_for(pilot, lambda: "(retrying)" not in screen_text(app), "the error to clear")

    try:
        run(app, scenario)
    finally:
        if holder is not None:
            holder.wait(timeout=60)
    assert step_orders(logs(db_path, sid)) == [1]


def test_stored_text_is_shown_escaped(db_path: Path, cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    cli.ok("run-next", str(sid))
    hostile = "evil \x1b]0;owned\x07 and \x1b[2J gone [bold]markup[/bold]"
    run_sql(db_path, "UPDATE messages SET content = :c WHERE session_id = :s", c=hostile, s=sid)
    run_sql(db_path, "UPDATE sessions SET topic = :c WHERE id = :s", c=hostile, s=sid)
    app = make_app(db_path, session_id=sid)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("3")
        text = await wait_for_text(pilot, "evil \u241b]0;owned\u2407 and \u241b[2J gone")
        assert "[bold]markup[/bold]" in text  # shown as written, not interpreted
        assert "\x1b" not in text and "\x07" not in text

    run(app, scenario)


@pytest.mark.parametrize("no_color", [True, False])
def test_no_color_is_respected(
    db_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, no_color: bool
) -> None:
    if not no_color:
        monkeypatch.delenv("NO_COLOR", raising=False)
    sid = new_session(cli, FLOW)
    cli.ok("auto", str(sid), "--quiet")
    app = make_app(db_path)
    shot: list[str] = []

    async def scenario(pilot: Any) -> None:
        await wait_for_text(pilot, "✓ finished")  # status keeps its symbol either way
        shot.append(app.export_screenshot())

    run(app, scenario, size=(80, 24))
    colours = set(re.findall(r"fill: #([0-9a-f]{6})", shot[0]))
    channels = {c: [int(c[i : i + 2], 16) for i in (0, 2, 4)] for c in colours}
    # Greys, and the near-grey default foreground of the screenshot's terminal theme.
    greys = {c for c, (r, g, b) in channels.items() if max(r, g, b) - min(r, g, b) <= 8}
    assert colours
    if no_color:
        assert colours == greys
    else:
        assert colours - greys


def test_works_on_mrc_database_which_mrc_still_reads(mrc_copy: Path, mrc_backend: Any) -> None:
    from typer.testing import CliRunner

    mrc_cli = Cli(CliRunner(), mrc_copy)
    mrc_cli.ok("db", "doctor", "--fix", "--yes")
    before = len(logs(mrc_copy, 51))
    app = make_app(mrc_copy)

    async def scenario(pilot: Any) -> None:
        await wait_for_text(pilot, "51")
        text = screen_text(app)
        assert "▶ running" in text
        app.open_session(51)
        await wait_for(pilot, lambda: session_screen_idle(app), "session 51")
        await pilot.press("n")
        await wait_for_text(pilot, "✓ step 1 Jonh")

    run(app, scenario)
    rows = logs(mrc_copy, 51)
    assert len(rows) == before + 1 and rows[-1]["status"] == "completed"
    assert rows[-1]["step_id"] == 21
    mrc = mrc_backend(mrc_copy)
    session = mrc.session(51)
    assert session["executed_steps_count"] == 1
    assert 51 in [s["id"] for s in mrc.list_sessions()["sessions"]]
    assert any(log["step_id"] == 21 for log in mrc.step_logs(51)["logs"])
    # MRC runs the session on from where flowcli left it.
    mrc.run_next(51)
    assert mrc.session(51)["executed_steps_count"] == 2
