"""Rows written as the database's owner writes them (flowcli.engine.conventions).

On a database MRC owns: MRC's section labels, the round raised after a summary, the last
step kept when a session finishes, `terminated` for a cancel, a message replying to the
session's newest one. On flowcli's own database flowcli keeps its ways. content_summary
is filled on both, as MRC computes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowcli.engine.conventions import content_summary
from tests.conftest import Cli, MakeCli
from tests.helpers import ROLES, messages, new_session, session_row

FLOW = (
    ROLES
    + """
name: conv
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - {speaker_role_ref: B, target_role_ref: A, task_type: summarize, context_scope: all}
  - {speaker_role_ref: C, task_type: comment, context_scope: none}
"""
)
LONG_TOPIC = "a topic long enough that the message quoting it runs past one hundred characters " * 2


@pytest.mark.parametrize(
    ("content", "summary"),
    [
        ("", ""),
        ("x" * 100, "x" * 100),
        ("y" * 101, "y" * 97 + "..."),
        ("é" * 150, "é" * 97 + "..."),
    ],
)
def test_content_summary_is_mrc_s(content: str, summary: str) -> None:
    assert content_summary(content) == summary


def test_flowcli_own_database_keeps_flowcli_ways(cli: Cli) -> None:
    sid = new_session(cli, FLOW, "--topic", LONG_TOPIC)
    cli.ok("auto", str(sid), "--quiet")
    rows = messages(cli.db, sid)
    assert [m["section"] for m in rows] == ["ask_question", "summarize", "comment"]
    assert [m["round_index"] for m in rows] == [1, 1, 1]
    assert all(m["content_summary"] == content_summary(m["content"]) for m in rows)
    assert any(m["content_summary"].endswith("...") for m in rows)
    row = session_row(cli.db, sid)
    assert row["status"] == "finished" and row["current_step_id"] is None
    other = new_session(cli, FLOW)
    cli.ok("session", "cancel", str(other))
    assert session_row(cli.db, other)["status"] == "cancelled"


@pytest.fixture
def mrc(mrc_copy: Path, make_cli: MakeCli) -> Cli:
    cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    return cli


def test_mrc_database_gets_mrc_conventions(mrc: Cli) -> None:
    sid = new_session(mrc, FLOW, "--topic", LONG_TOPIC)
    mrc.ok("auto", str(sid), "--quiet")
    rows = messages(mrc.db, sid)
    assert [m["section"] for m in rows] == ["提问阶段", "总结阶段", "讨论阶段"]
    # The round goes up after the summary, as MRC raises it.
    assert [m["round_index"] for m in rows] == [1, 1, 2]
    assert all(m["content_summary"] == content_summary(m["content"]) for m in rows)
    # Each message replies to the newest one before it.
    assert [m["reply_to_message_id"] for m in rows] == [None, rows[0]["id"], rows[1]["id"]]
    row = session_row(mrc.db, sid)
    last_step = max(
        int(r["step_id"])
        for r in mrc.sql("SELECT step_id FROM step_execution_logs WHERE session_id = :s", s=sid)
    )
    assert row["status"] == "finished" and row["current_step_id"] == last_step
    assert row["current_round"] == 2
    assert mrc("run-next", str(sid)).exit_code == 1  # finished, whatever current_step_id says


def test_terminated_is_terminal_everywhere(mrc: Cli) -> None:
    sid = new_session(mrc, FLOW)
    mrc.ok("run-next", str(sid))
    mrc.ok("session", "cancel", str(sid))
    assert session_row(mrc.db, sid)["status"] == "terminated"
    assert sid in [s["id"] for s in mrc.json("session", "list", "--status", "terminated")]
    for command in (["run-next", str(sid)], ["auto", str(sid)], ["session", "skip", str(sid)]):
        result = mrc(*command)
        assert result.exit_code == 1 and "terminated" in result.stderr, command
    explained = mrc.json("explain", str(sid))
    assert explained["runnable"] is False and "terminated" in explained["blocked_reason"]
    idle = ["--max-idle", "0.2", "--poll", "0.05"]
    worker = mrc.ok("worker", "--session", str(sid), *idle, "--json")
    events = [json.loads(line) for line in worker.stdout.splitlines()]
    assert [e["event"] for e in events] == ["summary"]  # nothing claimed, nothing run
    assert session_row(mrc.db, sid)["status"] == "terminated"
    cancel_again = mrc("session", "cancel", str(sid))
    assert cancel_again.exit_code == 1
