"""Batches: `--where` on list/count, each batch action, and what makes a batch a job
(preview, confirmation, dry run, limit, outcomes, list/show/resume), on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.conftest import Cli
from tests.helpers import ROLES, import_flow, logs, session_row
from tests.llm_server import Behaviour

BACKENDS = ("sqlite", "postgres")

FLOW = (
    ROLES
    + """
name: Demo
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - {speaker_role_ref: B, target_role_ref: A, task_type: answer_question, context_scope: all}
  - {speaker_role_ref: C, task_type: conclude, context_scope: none}
"""
)


def sessions(cli: Cli, n: int, flow: str = FLOW, *, topic: str = "t") -> list[int]:
    flow_id = import_flow(cli, flow)
    return [
        int(cli.json("session", "create", "--flow", str(flow_id), "--topic", f"{topic}{i}")["id"])
        for i in range(n)
    ]


def statuses(cli: Cli, ids: list[int]) -> list[str]:
    return [session_row(cli.db, sid)["status"] for sid in ids]


def batch_rows(cli: Cli) -> list[dict[str, Any]]:
    return cli.sql("SELECT * FROM flowcli_batches ORDER BY id")


def llm_args(fake: Any) -> list[str]:
    return [
        "--responder",
        "openai",
        "--llm-base-url",
        fake.base_url,
        "--llm-model",
        "m1",
        "--llm-api-key",
        "sk-batch-secret",
        "--llm-timeout",
        "20",
        "--llm-retries",
        "0",
        "--retries",
        "0",
        "--retry-backoff",
        "0.01",
    ]


# --------------------------------------------------------------------------- list, count
def test_list_and_count_with_where(cli: Cli) -> None:
    ids = sessions(cli, 4)
    cli.ok("run-next", str(ids[1]))
    cli.ok("session", "cancel", str(ids[3]))
    listed = cli.json("session", "list", "--where", "status == 'running' or topic == 't0'")
    assert [s["id"] for s in listed] == [ids[1], ids[0]]  # newest first
    assert cli.json("session", "list", "--where", "status != 'x'", "--limit", "2") == cli.json(
        "session", "list", "--limit", "2"
    )
    table = cli.ok("session", "list", "--where", "status == 'cancelled'").stdout
    assert "cancelled" in table and "running" not in table
    assert cli.json("session", "count", "--where", "executed_steps == 1") == {
        "count": 1,
        "where": "executed_steps == 1",
        "evaluated": "sql",
    }
    assert cli.ok("session", "count").stdout.strip() == "4"
    sandboxed = cli.json("session", "count", "--where", "topic.endswith('2') or step == 2")
    assert sandboxed["count"] == 2 and sandboxed["evaluated"] == "sandbox"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["session", "count", "--where", "stat == 1"], "unknown name 'stat'"),
        (["session", "list", "--where", "status ="], "invalid syntax"),
        (["session", "cancel", "--where", "__import__('os')"], "not allowed"),
        (["session", "cancel", "1", "--where", "True"], "give a session id or --where, not both"),
        (["session", "cancel"], "give a session id, or --where EXPR"),
        (["session", "cancel", "1", "--dry-run"], "--dry-run applies to --where batches only"),
        (["session", "resume", "1", "--limit", "3"], "--limit applies to --where batches only"),
        (["auto", "--where", "True", "--max-steps", "3"], "--max-steps applies to one session"),
        (["auto", "1", "--where", "True"], "give a session id or --where, not both"),
        (["batch", "show", "7"], "batch 7 does not exist"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli: Cli, args: list[str], message: str) -> None:
    ids = sessions(cli, 2)
    before = statuses(cli, ids)
    result = cli(*args)
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert statuses(cli, ids) == before and batch_rows(cli) == []


# --------------------------------------------------------------------------- confirmation
def test_without_a_terminal_a_batch_needs_yes(cli: Cli) -> None:
    ids = sessions(cli, 3)
    result = cli("session", "cancel", "--where", "topic != 't1'")
    assert result.exit_code == 2
    assert "2 session(s) match" in result.stderr  # the count and the first matches, first
    assert "t0" in result.stderr and "t2" in result.stderr
    assert "this would cancel 2 session(s); pass --yes" in result.stderr
    assert statuses(cli, ids) == ["not_started"] * 3 and batch_rows(cli) == []


def test_dry_run_lists_each_change_and_writes_nothing(cli: Cli) -> None:
    ids = sessions(cli, 3)
    cli.ok("session", "cancel", str(ids[2]))
    data = cli.json("session", "cancel", "--where", "True", "--dry-run")
    assert data["matched"] == 3
    assert [(s["id"], s["before"], s.get("after")) for s in data["sessions"]] == [
        (ids[0], "not_started", "cancelled"),
        (ids[1], "not_started", "cancelled"),
        (ids[2], "cancelled", None),
    ]
    assert "cannot cancel session" in data["sessions"][2]["refused"]
    table = cli.ok("session", "skip", "--where", "True", "--dry-run", "--limit", "1").stdout
    assert "nothing written" in table and "running" in table
    assert statuses(cli, ids) == ["not_started", "not_started", "cancelled"]
    assert logs(cli.db, ids[0]) == [] and batch_rows(cli) == []


# --------------------------------------------------------------------------- each action
def test_cancel_batch_records_each_outcome(cli: Cli) -> None:
    ids = sessions(cli, 4)
    cli.ok("auto", str(ids[3]), "--quiet")  # finished: cancel refuses it
    report = cli.json("session", "cancel", "--where", "topic != 't0'", "--yes")
    assert report["outcomes"] == {"done": 2, "refused": 1}
    assert report["status"] == "done" and report["open"] == 0
    assert statuses(cli, ids) == ["not_started", "cancelled", "cancelled", "finished"]
    shown = cli.json("batch", "show", str(report["id"]))
    assert shown["action"] == "cancel" and shown["selector"] == "topic != 't0'"
    assert shown["state"] == "done" and shown["handled"] == 3 and shown["total"] == 3
    assert [
        (i["session_id"], i["outcome"], i["status_before"], i["status_after"])
        for i in shown["items"]
    ] == [
        (ids[1], "done", "not_started", "cancelled"),
        (ids[2], "done", "not_started", "cancelled"),
        (ids[3], "refused", "finished", None),
    ]
    assert "cannot cancel session" in shown["items"][2]["detail"]
    listed = cli.json("batch", "list")
    assert [(b["id"], b["state"], b["handled"]) for b in listed] == [(report["id"], "done", 3)]
    panel = cli.ok("batch", "show", str(report["id"])).stdout
    assert "topic != 't0'" in panel and "refused" in panel


def test_limit_takes_the_lowest_ids(cli: Cli) -> None:
    ids = sessions(cli, 5)
    report = cli.json("session", "cancel", "--where", "True", "--limit", "2", "--yes")
    assert report["total"] == 2
    assert statuses(cli, ids) == ["cancelled"] * 2 + ["not_started"] * 3
    assert cli.sql("SELECT arguments FROM flowcli_batches")[0]["arguments"].count('"limit": 2')


def test_resume_batch(cli: Cli) -> None:
    ids = sessions(cli, 3)
    for sid in ids:
        cli.ok("run-next", str(sid))
    cli.ok("session", "pause", str(ids[0]))
    cli.ok("session", "pause", str(ids[2]))
    report = cli.json("session", "resume", "--where", "status == 'paused'", "--yes")
    assert report["outcomes"] == {"done": 2} and report["statuses_after"] == {"running": 2}
    assert statuses(cli, ids) == ["running"] * 3


def test_skip_batch_moves_each_session_on_once(cli: Cli) -> None:
    ids = sessions(cli, 3)
    cli.ok("run-next", str(ids[0]))
    report = cli.json(
        "session", "skip", "--where", "flow == 'Demo'", "--reason", "endpoint down", "--yes"
    )
    assert report["outcomes"] == {"done": 3}
    for sid in ids:
        skipped = [r for r in logs(cli.db, sid) if r["status"] == "skipped"]
        assert len(skipped) == 1
        assert skipped[0]["result_data"]["reason"] == "endpoint down"
    assert [session_row(cli.db, s)["current_step_id"] is not None for s in ids] == [True] * 3
    assert [len(logs(cli.db, s)) for s in ids] == [2, 1, 1]


def test_retry_batch_after_an_outage(cli: Cli, fake_llm: Any) -> None:
    """The seed's case: the LLM endpoint fails every running session; once it is back,
    one command retries exactly the sessions the outage failed."""
    llm_flow = FLOW.replace("name: Demo", "name: LLM")
    ids = sessions(cli, 4, llm_flow)
    fake_llm.default = Behaviour(kind="status", status=503)
    for sid in ids[:3]:
        assert cli("auto", str(sid), *llm_args(fake_llm), "--quiet").exit_code == 1
    cli.ok("session", "cancel", str(ids[2]))  # failed, then cancelled: not selected
    assert statuses(cli, ids) == ["failed", "failed", "cancelled", "not_started"]
    where = "status == 'failed' and 'HTTP 503' in last_error"
    assert cli.json("session", "count", "--where", where)["count"] == 2
    dry = cli.json("session", "retry", "--where", "True", "--dry-run")["sessions"]
    assert [s.get("after") for s in dry] == ["running", "running", None, None]
    assert "not failed" in dry[3]["refused"]
    fake_llm.default = Behaviour()
    calls = len(fake_llm.requests)
    report = cli.json("session", "retry", "--where", where, "--yes", *llm_args(fake_llm))
    assert report["outcomes"] == {"done": 2} and report["statuses_after"] == {"running": 2}
    assert len(fake_llm.requests) == calls + 2  # one step each, exactly
    for sid in ids[:2]:
        assert [r["status"] for r in logs(cli.db, sid)] == ["failed", "completed"]
    items = cli.json("batch", "show", str(report["id"]))["items"]
    assert all(i["detail"] == "execution #2 completed" for i in items)
    # the API key is never stored with the batch
    assert "sk-batch-secret" not in json.dumps(
        cli.sql("SELECT * FROM flowcli_batches"), default=str
    )


def test_retry_batch_records_a_step_that_fails_again(cli: Cli, fake_llm: Any) -> None:
    ids = sessions(cli, 1, FLOW.replace("name: Demo", "name: LLM"))
    fake_llm.default = Behaviour(kind="status", status=500)
    cli("auto", str(ids[0]), *llm_args(fake_llm), "--quiet")
    report = cli.json(
        "session", "retry", "--where", "status == 'failed'", "--yes", *llm_args(fake_llm)
    )
    assert report["outcomes"] == {"done": 1} and report["statuses_after"] == {"failed": 1}
    item = cli.json("batch", "show", str(report["id"]))["items"][0]
    assert item["detail"].startswith("step failed again:") and "HTTP 500" in item["detail"]


def test_auto_batch_runs_every_match_to_the_end(cli: Cli) -> None:
    ids = sessions(cli, 5)
    cli.ok("run-next", str(ids[1]))
    cli.ok("session", "start", str(ids[4]))
    cli.ok("session", "pause", str(ids[4]))
    dry = cli.json("auto", "--where", "True", "--dry-run")["sessions"]
    assert ["refused" in s for s in dry] == [False] * 4 + [True]
    assert "is paused" in dry[4]["refused"] and batch_rows(cli) == []
    report = cli.json("auto", "--where", "True", "--concurrency", "2", "--yes")
    assert report["outcomes"] == {"done": 4, "refused": 1}
    assert report["statuses_after"] == {"finished": 4}
    assert statuses(cli, ids) == ["finished"] * 4 + ["paused"]
    for sid in ids[:4]:
        rows = logs(cli.db, sid)
        assert [r["execution_order"] for r in rows] == [1, 2, 3]  # each step once
        assert all(r["status"] == "completed" for r in rows)
    assert cli.json("batch", "show", str(report["id"]))["arguments"]["concurrency"] == 2


def test_a_batch_with_no_match_writes_nothing(cli: Cli) -> None:
    sessions(cli, 2)
    result = cli.ok("session", "cancel", "--where", "status == 'failed'", "--yes")
    assert "0 session(s) match" in result.stderr
    assert cli.json("session", "cancel", "--where", "False", "--yes")["batch"] is None
    assert batch_rows(cli) == []


# --------------------------------------------------------------------------- the job
def test_a_session_changed_meanwhile_is_not_acted_on(cli: Cli) -> None:
    from flowcli.db.connection import Database, resolve_target
    from flowcli.engine.batch import BatchSettings, create_batch, preview
    from flowcli.engine.batch_run import run_batch

    ids = sessions(cli, 3)
    db = Database(resolve_target(str(cli.db)))
    try:
        plan = preview(db, "cancel", "status == 'not_started'")
        batch_id = create_batch(db, plan, BatchSettings())
        cli.ok("run-next", str(ids[1]))  # now running: the selector no longer matches it
        report = run_batch(db, batch_id)
    finally:
        db.dispose()
    assert report.outcomes == {"done": 2, "unmatched": 1}
    assert statuses(cli, ids) == ["cancelled", "running", "cancelled"]


def test_stopped_batch_resumes_and_skips_what_is_done(cli: Cli) -> None:
    from flowcli.db.connection import Database, resolve_target
    from flowcli.engine.batch import BatchSettings, create_batch, preview
    from flowcli.engine.batch_run import run_batch

    ids = sessions(cli, 4)
    db = Database(resolve_target(str(cli.db)))
    stop = threading.Event()
    seen: list[dict[str, Any]] = []

    def after_two(event: dict[str, Any]) -> None:
        seen.append(event)
        if len(seen) == 2:
            stop.set()

    try:
        plan = preview(db, "skip", "True")
        batch_id = create_batch(db, plan, BatchSettings(reason="r"))
        report = run_batch(db, batch_id, stop=stop, emit=after_two)
    finally:
        db.dispose()
    assert report.stopped and report.status == "incomplete"
    assert report.outcomes == {"done": 2, "pending": 2}
    assert cli.json("batch", "list")[0]["state"] == "incomplete"
    resumed = cli.json("batch", "resume", str(batch_id))
    assert resumed["outcomes"] == {"done": 4} and resumed["status"] == "done"
    assert [len(logs(cli.db, sid)) for sid in ids] == [1, 1, 1, 1]  # each skipped once
    again = cli.json("batch", "resume", str(batch_id))
    assert again == {"id": batch_id, "status": "done", "open": 0}


def test_busy_sessions_are_left_for_resume(cli: Cli) -> None:
    ids = sessions(cli, 2)
    cli.ok("run-next", str(ids[0]))
    cli.ok("run-next", str(ids[1]))
    # another process holds a live claim on session 2's step
    cli.sql(
        "UPDATE sessions SET lease_owner = 'elsewhere:1:x', "
        "lease_expires_at = '2999-01-01 00:00:00' WHERE id = :sid",
        sid=ids[1],
    )
    result = cli("session", "skip", "--where", "True", "--yes", "--json")
    assert result.exit_code == 1
    assert "1 session(s) not done" in result.stderr and "batch resume 1" in result.stderr
    assert json.loads(result.stdout)["outcomes"] == {"done": 1, "busy": 1}
    cli.sql("UPDATE sessions SET lease_owner = NULL, lease_expires_at = NULL")
    assert cli.json("batch", "resume", "1")["outcomes"] == {"done": 2}
    assert [len(logs(cli.db, sid)) for sid in ids] == [2, 2]


def test_a_batch_run_by_a_live_process_is_not_resumed_twice(cli: Cli) -> None:
    import os
    import socket
    import subprocess

    sessions(cli, 2)
    cli.ok("session", "cancel", "--where", "True", "--yes", "--limit", "1")
    cli.sql("UPDATE flowcli_batch_items SET outcome = 'pending'")  # as if killed midway
    host = socket.gethostname()
    cli.sql(
        "UPDATE flowcli_batches SET status = 'running', owner = :owner, "
        "lease_expires_at = '2999-01-01 00:00:00'",
        owner=f"{host}:{os.getpid()}:other",  # this test's process: alive
    )
    busy = cli("batch", "resume", "1")
    assert busy.exit_code == 1 and "batch 1 is being run by" in busy.stderr
    assert cli.json("batch", "list")[0]["state"] == "running"
    # the same claim held by a process that has exited: stalled, and resumable at once
    gone = subprocess.Popen(["true"])
    gone.wait()
    cli.sql("UPDATE flowcli_batches SET owner = :owner", owner=f"{host}:{gone.pid}:x")
    assert cli.json("batch", "list")[0]["state"] == "stalled"
    assert cli.json("batch", "resume", "1")["status"] == "done"


def test_stored_text_is_shown_inert(cli: Cli) -> None:
    """Topics, errors and selectors come from users and LLMs: no terminal escapes, no markup."""
    ids = sessions(cli, 1, topic="\x1b[2J[bold]x")
    cli.ok("session", "cancel", str(ids[0]))
    cli.ok("session", "resume", "--where", "'[bold]' in topic", "--yes")
    shown = cli.ok("batch", "show", "1")
    for out in (shown.stdout, cli.ok("batch", "list").stdout):
        assert "\x1b" not in out
    assert "'[bold]' in topic" in shown.stdout
    preview = cli("session", "cancel", "--where", "'[bold]' in topic")
    assert "\\x1b[2J[bold]x0" in preview.stderr and "\x1b" not in preview.stderr
