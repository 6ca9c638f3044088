"""Breakpoints: `auto --break-at`, `--break-when` and `--step` stop before the matching
step, leave the session runnable, and say in `--json` where and why they stopped."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from flowcli.db.connection import Database, resolve_target
from flowcli.engine.breakpoints import Breakpoints
from flowcli.engine.runner import auto
from flowcli.errors import UsageError
from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env
from tests.flows_fixtures import loop_flow
from tests.helpers import logs, new_session, session_row, step_orders

BACKENDS = ("sqlite", "postgres")

# Step 2 loops back to step 1 twice; each message names its step, round and iteration.
FLOW = loop_flow(
    2, name="breaks", template="{{ speaker }} at step {{ step }}, iteration {{ loop_iteration }}"
)
ALL_ORDERS = [1, 2, 1, 2, 1, 2, 3]


def current_order(cli: Cli, sid: int) -> int:
    step_id = session_row(cli.db, sid)["current_step_id"]
    snapshot = json.loads(session_row(cli.db, sid)["flow_snapshot"])
    return next(s["order"] for s in snapshot["steps"] if s["id"] == step_id)


def usage_error(cli: Cli, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    # Ours are one line; Click's own type errors add its usage lines above theirs.
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_break_at_stops_before_the_step_and_the_session_stays_runnable(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    summary = cli.json("auto", str(sid), "--break-at", "3")
    assert summary["stop_reason"] == "breakpoint"
    assert summary["steps_run"] == 6
    assert summary["final_status"] == "running"
    assert summary["breakpoint"] == {"kind": "order", "reason": "breakpoint at step 3"}
    before = summary["stopped_before"]
    assert (before["order"], before["speaker"], before["round"]) == (3, "C", 1)
    # Stopped *before* step 3: it has not run, and it is where the session stands.
    assert step_orders(logs(cli.db, sid)) == ALL_ORDERS[:6]
    assert current_order(cli, sid) == 3
    # The same breakpoint stops again at once; the session runs on from where it stopped.
    again = cli.json("auto", str(sid), "--break-at", "3")
    assert again["stop_reason"] == "breakpoint" and again["steps_run"] == 0
    assert cli.json("auto", str(sid))["final_status"] == "finished"
    assert step_orders(logs(cli.db, sid)) == ALL_ORDERS


def test_break_at_is_repeatable_and_stops_at_the_first_reached(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    cli.ok("run-next", str(sid))  # step 1 ran; step 2 is next
    summary = cli.json("auto", str(sid), "--break-at", "3", "--break-at", "2")
    assert summary["steps_run"] == 0
    assert summary["stopped_before"]["order"] == 2
    cli.ok("run-next", str(sid))
    summary = cli.json("auto", str(sid), "--break-at", "3", "--break-at", "2")
    assert (summary["steps_run"], summary["stopped_before"]["order"]) == (1, 2)
    assert summary["stopped_before"]["loop_iteration"] == 1


def test_break_when_stops_before_the_first_step_it_is_true_for(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    summary = cli.json("auto", str(sid), "--break-when", "loop_iteration == 2 and step == 2")
    assert summary["stop_reason"] == "breakpoint"
    assert summary["breakpoint"]["kind"] == "expression"
    assert "loop_iteration == 2 and step == 2" in summary["breakpoint"]["reason"]
    before = summary["stopped_before"]
    assert (before["order"], before["loop_iteration"]) == (2, 2)
    assert step_orders(logs(cli.db, sid)) == ALL_ORDERS[:5]


def test_break_when_reads_the_last_message(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    summary = cli.json("auto", str(sid), "--break-when", "last and 'iteration 1' in last.content")
    # The first message of iteration 1 is step 1's; the run stops before step 2 after it.
    assert summary["stopped_before"]["order"] == 2
    assert summary["stopped_before"]["loop_iteration"] == 1
    assert summary["steps_run"] == 3


def test_break_when_that_cannot_be_evaluated_stops_and_says_why(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    summary = cli.json("auto", str(sid), "--break-when", "vars['missing'] > 1")
    assert summary["stop_reason"] == "breakpoint" and summary["steps_run"] == 0
    assert summary["breakpoint"]["kind"] == "error"
    assert "could not be evaluated" in summary["breakpoint"]["reason"]
    assert logs(cli.db, sid) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--break-when", "__import__('os').system('true')"], "--break-when"),
        (["--break-when", "unknown_name > 1"], "unknown_name"),
        (["--break-when", "  "], "--break-when is empty"),
        (["--break-when", "(" * 500], "--break-when"),
        (["--break-at", "0"], "--break-at"),
        (["--break-at", "x"], "--break-at"),
        (["--step"], "needs a terminal"),
    ],
)
def test_bad_breakpoints_are_usage_errors_and_write_nothing(
    cli: Cli, args: list[str], needle: str
) -> None:
    sid = new_session(cli, FLOW)
    before = session_row(cli.db, sid)
    assert needle in usage_error(cli, "auto", str(sid), *args)
    assert session_row(cli.db, sid) == before
    assert logs(cli.db, sid) == []


def test_the_summary_line_says_where_and_why(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    result = cli.ok("auto", str(sid), "--break-at", "3")
    assert "stopped: breakpoint" in result.stderr
    assert "before step 3 C (summarize), round 1" in result.stderr
    assert "breakpoint at step 3" in result.stderr


# --- the engine function, as the TUI calls it ------------------------------------------


def _database(cli: Cli) -> Database:
    return Database(resolve_target(str(cli.db)))


def test_resume_from_break_runs_the_stopped_step_then_checks_again(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    db = _database(cli)
    try:
        breaks = Breakpoints.parse([1])
        first = auto(db, sid, breakpoints=breaks)
        assert (first.stop_reason, first.steps_run) == ("breakpoint", 0)
        second = auto(db, sid, breakpoints=breaks, resume_from_break=True)
        # Step 1 ran, step 2 ran, then step 1 (iteration 1) is next: stopped again.
        assert (second.stop_reason, second.steps_run) == ("breakpoint", 2)
        assert second.stopped_before is not None
        assert second.stopped_before["loop_iteration"] == 1
    finally:
        db.dispose()


def test_before_step_sees_each_upcoming_step_and_can_stop_the_run(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    db = _database(cli)
    seen: list[tuple[int, int]] = []

    def ask(upcoming) -> bool:  # type: ignore[no-untyped-def]
        seen.append((upcoming.step.order, upcoming.loop_iteration))
        return len(seen) <= 3

    try:
        summary = auto(db, sid, before_step=ask)
    finally:
        db.dispose()
    assert seen == [(1, 0), (2, 0), (1, 1), (2, 1)]
    assert (summary.stop_reason, summary.steps_run) == ("declined", 3)
    assert summary.stopped_before is not None and summary.stopped_before["order"] == 2
    assert session_row(cli.db, sid)["status"] == "running"


def test_breakpoints_parse_rejects_bad_input() -> None:
    with pytest.raises(UsageError):
        Breakpoints.parse([0])
    with pytest.raises(UsageError):
        Breakpoints.parse([], "open('x')")
    assert not Breakpoints.parse()
    assert Breakpoints.parse([2]).with_order(3, True).orders == {2, 3}
    assert Breakpoints.parse([2]).with_order(2, False).orders == frozenset()


# --- --step on a real terminal ---------------------------------------------------------


def _read_until(fd: int, needle: bytes, seen: bytearray, deadline: float) -> None:
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {needle!r}; got {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"the terminal closed before {needle!r}; got {bytes(seen)!r}"
            seen.extend(chunk)


@pytest.mark.sqlite_only
def test_step_asks_on_a_terminal_before_each_step(cli: Cli, tmp_path: Path) -> None:
    sid = new_session(cli, FLOW)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*flowcli_subprocess_cmd(), "--db", str(cli.db), "auto", str(sid), "--step", "--json"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    os.close(terminal)
    seen = bytearray()
    deadline = time.monotonic() + 60
    try:
        for answer in (b"y", b"", b"n"):  # yes, the default (yes), no
            mark = len(seen)
            _read_until(controller, b"Run it?", seen, deadline)
            prompt = bytes(seen[mark:])
            seen.clear()
            os.write(controller, answer + b"\n")
            if answer == b"n":
                assert b"next: step 1 A" in prompt  # the loop's second pass
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert proc.returncode == 0
    summary = json.loads(out)
    assert (summary["stop_reason"], summary["steps_run"]) == ("declined", 2)
    assert summary["stopped_before"]["loop_iteration"] == 1
    assert step_orders(logs(cli.db, sid)) == [1, 2]
