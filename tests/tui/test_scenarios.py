"""`flowcli tui` driven by keystrokes, headless (Textual's Pilot), as a person uses it: open
a session, step, hit a breakpoint, continue, retry, skip, fork, mark and diff. Each test
checks what is on the screen and what is in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from flowcli.engine.breakpoints import Breakpoints
from flowcli.engine.debugging import diff_sessions
from tests.conftest import Cli
from tests.flows_fixtures import loop_flow
from tests.helpers import ROLES, logs, new_session, session_row, step_orders
from tests.tui.pilot import (
    database,
    make_app,
    run,
    screen_text,
    session_screen_idle,
    wait_for,
    wait_for_text,
)

BACKENDS = ("sqlite", "postgres")

FLOW = loop_flow(
    2,
    name="tui-loop",
    template="{{ speaker }} speaks at step {{ step }}, iteration {{ loop_iteration }}"
    "{{ ' in a ' ~ vars.tone ~ ' tone' if 'tone' in vars else '' }}",
)
ALL_ORDERS = [1, 2, 1, 2, 1, 2, 3]

# Step 2 fails (the template reads a variable that is not there) unless `ok` is set.
FAILING_FLOW = (
    ROLES
    + """
name: tui-failing
responder:
  type: template
  template: "{% if step == 2 and 'ok' not in vars %}{{ vars.missing }}{% else %}fine{% endif %}"
steps:
  - {speaker_role_ref: A, task_type: ask_question, context_scope: none}
  - {speaker_role_ref: B, task_type: answer_question, context_scope: none}
  - {speaker_role_ref: C, task_type: summarize, context_scope: none}
"""
)


def tree_labels(app: Any) -> list[str]:
    from flowcli.tui.screens.session import LogTree

    tree = app.screen.query_one(LogTree)
    return [str(node.label) for node in tree.nodes.values()]


def test_open_a_session_from_the_list_and_step_it(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    app = make_app(cli.db)

    async def scenario(pilot: Any) -> None:
        await wait_for_text(pilot, "tui-loop")
        text = screen_text(app)
        assert "○ not_started" in text and f" {sid} " in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        assert "○ not_started" in screen_text(app)
        await pilot.press("n")
        await wait_for_text(pilot, "✓ step 1 A (ask_question): completed")
        await wait_for(pilot, lambda: len(tree_labels(app)) == 1, "one execution in the log")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(tree_labels(app)) == 2, "two executions in the log")
        await wait_for(pilot, lambda: session_screen_idle(app), "the detail of the newest")
        text = screen_text(app)
        assert "#2 ✓ 2 B" in text
        assert "▶ running" in text and "2 executed" in text
        # The selected (newest) execution in full: its message and its context diff.
        assert "B speaks at step 2, iteration 0" in text
        assert "context compared with log" in text
        await pilot.press("2")  # explain: why the next step is next
        await wait_for_text(pilot, "execution #2 decided: loop back to step 1")
        await pilot.press("3")  # the transcript
        await wait_for_text(pilot, "A speaks at step 1, iteration 0")

    run(app, scenario)
    assert step_orders(logs(cli.db, sid)) == [1, 2]
    assert session_row(cli.db, sid)["status"] == "running"


def test_a_breakpoint_set_on_the_steps_list_stops_the_run_before_its_step(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    app = make_app(cli.db, session_id=sid)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("4")  # the steps list, focused
        await wait_for_text(pilot, "summarize")
        await pilot.press("down", "down", "b")  # step 3
        assert app.breakpoints[sid].orders == {3}
        await wait_for_text(pilot, "breakpoints: at step 3")
        await pilot.press("r")
        await wait_for_text(pilot, "■ stopped before step 3 C (summarize)")
        assert "breakpoint at step 3" in screen_text(app)
        # The explain pane comes forward: step 3 is next, and why.
        await wait_for_text(pilot, "3 C (summarize), context all")
        assert step_orders(logs(cli.db, sid)) == ALL_ORDERS[:6]
        assert session_row(cli.db, sid)["status"] == "running"
        # r again continues from the breakpoint (the stopped step runs) to the end.
        await pilot.press("r")
        await wait_for_text(pilot, "✓ finished")

    run(app, scenario)
    assert step_orders(logs(cli.db, sid)) == ALL_ORDERS
    assert session_row(cli.db, sid)["status"] == "finished"


def test_break_on_the_log_and_break_when_from_the_form(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    cli.ok("run-next", str(sid))  # one execution (step 1) in the log
    app = make_app(cli.db, session_id=sid)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("b")  # on the selected execution: its step, 1
        assert app.breakpoints_for(sid).orders == {1}
        await pilot.press("b")  # and off again
        assert app.breakpoints_for(sid).orders == frozenset()
        await pilot.press("w")
        await wait_for(pilot, lambda: app.screen.query("#when"), "the break-when form")
        await pilot.press(*"round >")
        await pilot.press("enter")
        await wait_for_text(pilot, "--break-when")  # the error, in the form
        assert app.screen.query("#when")  # the form stays open
        await pilot.press("ctrl+u", *"loop_iteration == 2", "enter")
        await wait_for_text(pilot, "when loop_iteration == 2")
        assert app.breakpoints_for(sid) == Breakpoints.parse([], "loop_iteration == 2")
        await pilot.press("r")
        await wait_for_text(pilot, "■ stopped before step 1 A (ask_question)")
        assert "loop_iteration == 2' is true" in screen_text(app)

    run(app, scenario)
    assert step_orders(logs(cli.db, sid)) == ALL_ORDERS[:4]


def test_retry_and_skip_a_failed_step(cli: Cli) -> None:
    sid = new_session(cli, FAILING_FLOW)
    assert cli("auto", str(sid), "--quiet", "--retries", "0").exit_code == 1
    assert session_row(cli.db, sid)["status"] == "failed"
    app = make_app(cli.db, session_id=sid)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        assert "✗ failed" in screen_text(app)
        await pilot.press("p")  # nothing to pause; it says what would help
        await pilot.press("t")
        await wait_for_text(pilot, "✗ step 2 B (answer_question) failed")
        await pilot.press("k")
        await wait_for_text(pilot, "↷ skipped step 2")
        await pilot.press("n")
        await wait_for_text(pilot, "✓ finished")

    run(app, scenario)
    rows = logs(cli.db, sid)
    assert [(r["step_snapshot"]["order"], r["status"]) for r in rows] == [
        (1, "completed"),
        (2, "failed"),
        (2, "failed"),
        (2, "skipped"),
        (3, "completed"),
    ]
    assert rows[3]["result_data"]["reason"] == "skipped in flowcli tui"
    assert session_row(cli.db, sid)["status"] == "finished"


def test_fork_at_the_selected_execution_with_an_edited_variable(cli: Cli) -> None:
    sid = new_session(cli, FLOW, "--var", "tone=calm")
    cli.ok("auto", str(sid), "--quiet")
    source_logs = logs(cli.db, sid)
    app = make_app(cli.db, session_id=sid)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        # The newest execution (#7) is selected. Repeats nest under their first pass
        # (#1 #3 #5, then #2 #4 #6, then #7): up twice is #4, step 2's second pass.
        await pilot.press("up", "up")
        await wait_for(pilot, lambda: session_screen_idle(app), "the selected execution")
        assert f"{source_logs[3]['id']} · execution #4" in screen_text(app)
        await pilot.press("f")
        await wait_for(pilot, lambda: app.screen.query("#var-0"), "the fork form")
        assert '"calm"' in screen_text(app)
        await pilot.press("ctrl+u", *"angry", "tab", *"extra=[1, 2]", "ctrl+s")
        await wait_for(
            pilot,
            lambda: getattr(app.screen, "session_id", sid) != sid and session_screen_idle(app),
            "the fork's own screen",
        )
        assert f"fork of session {sid} after log {source_logs[3]['id']}" in screen_text(app)

    run(app, scenario)
    fork = session_row(cli.db, sid + 1)
    assert fork["forked_from_session_id"] == sid
    assert fork["forked_from_log_id"] == source_logs[3]["id"]
    assert json.loads(fork["variables"]) == {"tone": "angry", "extra": [1, 2]}
    assert step_orders(logs(cli.db, sid + 1)) == ALL_ORDERS[:4]
    assert fork["status"] == "running"


def test_mark_two_sessions_and_diff_them_side_by_side(cli: Cli) -> None:
    a = new_session(cli, FLOW, "--var", "tone=calm")
    b = int(cli.json("session", "create", "--flow", "1", "--var", "tone=warm")["id"])
    cli.ok("auto", str(a), "--quiet")
    cli.ok("auto", str(b), "--quiet", "--max-steps", "5")
    expected = diff_sessions(database(cli.db), b, a)["summary"]
    app = make_app(cli.db)

    async def scenario(pilot: Any) -> None:
        await wait_for_text(pilot, "tui-loop")
        await pilot.press("m")  # the newest, b
        await pilot.press("down", "m")  # then a
        await wait_for_text(pilot, f"marked: {b}, {a}")
        await pilot.press("d")
        await wait_for_text(pilot, f"session {b} (A) vs session {a} (B)")
        text = screen_text(app)
        summary = (
            f"= {expected['same']} same, ≠ {expected['different']} different, "
            f"{expected['only_a']} only in A, {expected['only_b']} only in B"
        )
        assert summary in text
        assert "A speaks at step 1, iteration 0 in a warm tone" in text  # A, in full
        assert "A speaks at step 1, iteration 0 in a calm tone" in text  # B, beside it
        await pilot.press("o")  # only the differences
        await wait_for_text(pilot, "showing only differences")
        await pilot.press("escape")
        await wait_for_text(pilot, "newest first")

    run(app, scenario)
    assert expected == {"same": 0, "different": 5, "only_a": 0, "only_b": 2}


def test_pause_and_resume_the_session_from_the_app(cli: Cli) -> None:
    sid = new_session(cli, FLOW)
    cli.ok("run-next", str(sid))
    app = make_app(cli.db, session_id=sid)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: session_screen_idle(app), "the session screen")
        await pilot.press("p")
        await wait_for_text(pilot, f"session {sid} is paused")
        assert session_row(cli.db, sid)["status"] == "paused"
        await pilot.press("r")  # a paused session does not run: the reason is shown
        await wait_for_text(pilot, "is paused; run `flowcli session resume")
        await pilot.press("p")
        await wait_for_text(pilot, f"session {sid} is running")

    run(app, scenario)
    assert session_row(cli.db, sid)["status"] == "running"
    assert step_orders(logs(cli.db, sid)) == [1]


def test_an_unknown_session_ends_the_app_with_the_error(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    app = make_app(cli.db, session_id=99999)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: app.fatal_error is not None, "the start-up check")

    run(app, scenario)
    assert str(app.fatal_error) == "session 99999 does not exist"
    assert app.return_code == 1


def test_the_sessions_list_reads_newest_first_with_flow_names_and_filters(cli: Cli) -> None:
    # The list's read is the one `session list` makes (flowcli.db.session_reads), on the
    # bare sqlite3 driver for a SQLite file and through SQLAlchemy on PostgreSQL: both
    # give the same rows.
    from flowcli.tui.data import read_sessions

    first = new_session(cli, FLOW)
    other = new_session(cli, FAILING_FLOW)
    newest = int(cli.json("session", "create", "--flow", "1")["id"])
    cli.ok("auto", str(first), "--quiet")
    # MRC leaves a session it never started with a NULL status: it is "not started".
    cli.sql("UPDATE sessions SET status = NULL WHERE id = :id", id=newest)
    db = database(cli.db)

    everything = read_sessions(db, statuses=None, flow_id=None)
    assert [(s["id"], s["flow_name"]) for s in everything.sessions] == [
        (newest, "tui-loop"),
        (other, "tui-failing"),
        (first, "tui-loop"),
    ]
    assert [(f["id"], f["name"], f["sessions"]) for f in everything.flows] == [
        (1, "tui-loop", 2),
        (2, "tui-failing", 1),
    ]
    not_started = read_sessions(db, statuses=["not_started"], flow_id=None)
    assert [s["id"] for s in not_started.sessions] == [newest, other]
    finished = read_sessions(db, statuses=["finished"], flow_id=None)
    assert [s["id"] for s in finished.sessions] == [first]
    by_flow = read_sessions(db, statuses=None, flow_id=1)
    assert [s["id"] for s in by_flow.sessions] == [newest, first]
    # `session list` shares the query: the same status filter lists the same sessions.
    listed = cli.json("session", "list", "--status", "not_started")
    assert sorted(s["id"] for s in listed) == [other, newest]
