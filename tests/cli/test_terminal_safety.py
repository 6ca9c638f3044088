"""Stored text never steers the terminal (issue 14, item 4): hostile strings in every
field that a view shows (topics, flow, role and step names, descriptions, messages,
error messages, variables) reach the screen only as visible stand-ins, in every view,
on a terminal and through a pipe; ``--json``, ``--jsonl`` and ``--csv`` keep the exact
bytes."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from flowcli.render.safe_text import one_line, visible
from tests.conftest import WIDE_ENV, Cli
from tests.helpers import new_session

# Window title (OSC), clear screen and blink (CSI), an 8-bit CSI, a bidi override and
# an isolate, a carriage return and a backspace.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[5m\u202eevil\u2066x\x9b31m\r\x08end"
DANGEROUS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

FLOW = """
name: safe
roles:
  A: {prompt: "You are A."}
  B: {prompt: "You are B."}
termination_config: {max_rounds: 1}
responder:
  type: template
  template: "{{ speaker }} says {{ vars.word }}{% if step == 2 %}{{ vars.missing }}{% endif %}"
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none,
     description: first}
  - {speaker_role_ref: B, target_role_ref: A, task_type: answer_question,
     context_scope: last_message}
"""


def test_visible_keeps_text_and_shows_every_control() -> None:
    assert visible("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
    shown = visible(HOSTILE)
    assert not DANGEROUS.search(shown)
    assert "␛]0;pwned␇" in shown and "<U+202E>" in shown and "<U+2066>" in shown
    assert visible("a\nb\tc") == "a\nb\tc"
    assert one_line("a\nb\tc") == "a␊b␉c"


@pytest.fixture
def hostile_db(cli: Cli) -> tuple[Cli, int]:
    sid = new_session(cli, FLOW, "--var", f"word={json.dumps(HOSTILE)}")
    cli("auto", str(sid), "--quiet")  # step 2 fails: vars.missing
    flow_id = cli.sql("SELECT flow_template_id AS f FROM sessions WHERE id = :s", s=sid)[0]["f"]
    other = cli.json("session", "create", "--flow", str(flow_id), "--var", "word=x")["id"]
    cli("auto", str(other), "--quiet")
    h = HOSTILE
    cli.sql("UPDATE sessions SET topic = :h, error_reason = :h WHERE id = :s", h=h, s=sid)
    cli.sql("UPDATE flow_templates SET name = :h, topic = :h, description = :h", h=h)
    cli.sql("UPDATE flow_steps SET description = :h", h=h)
    cli.sql("UPDATE roles SET name = :n || name, prompt = :h", n=h, h=h)
    cli.sql("UPDATE messages SET content = :h", h=h)
    cli.sql("UPDATE step_execution_logs SET error_message = :h WHERE status = 'failed'", h=h)
    for row in cli.sql("SELECT id, step_snapshot FROM step_execution_logs"):
        snap = json.loads(row["step_snapshot"])
        snap["speaker_role_ref"] = h
        snap["task_type"] = h
        cli.sql(
            "UPDATE step_execution_logs SET step_snapshot = :s WHERE id = :i",
            s=json.dumps(snap),
            i=row["id"],
        )
    cli.sql("UPDATE session_roles SET role_ref = :h", h=h)
    return cli, sid


VIEWS = [
    ["session", "list"],
    ["session", "show", "{sid}"],
    ["session", "transcript", "{sid}"],
    ["logs", "{sid}"],
    ["logs", "{sid}", "--tree"],
    ["logs", "stats", "{sid}"],
    ["logs", "timeline", "{sid}"],
    ["log", "{log}"],
    ["flow", "list"],
    ["flow", "show", "{flow}"],
    ["role", "list"],
    ["explain", "{sid}"],
    ["session", "diff", "{sid}", "{other}"],
    ["run-next", "{sid}"],  # fails again: its error line carries the stored text
]


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_no_view_lets_stored_text_steer_the_terminal(
    hostile_db: tuple[Cli, int], terminal: bool
) -> None:
    cli, sid = hostile_db
    log_id = cli.sql("SELECT max(id) AS i FROM step_execution_logs")[0]["i"]
    flow_id = cli.sql("SELECT max(id) AS i FROM flow_templates")[0]["i"]
    env: dict[str, str | None] = dict(WIDE_ENV)
    if not terminal:
        env["TTY_COMPATIBLE"] = None
    runner = CliRunner()
    for view in VIEWS:
        args = [a.format(sid=sid, other=sid + 1, log=log_id, flow=flow_id) for a in view]
        result = runner.invoke(app, ["--db", str(cli.db), *args], env=env)
        output = result.stdout + result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert "pwned" in output or "stats" in args, args
        found = DANGEROUS.search(output)
        assert found is None, (args, repr(output[max(0, found.start() - 40) : found.end() + 40]))


def test_machine_formats_keep_the_exact_bytes(hostile_db: tuple[Cli, int]) -> None:
    cli, sid = hostile_db
    assert cli.json("session", "show", str(sid))["topic"] == HOSTILE
    assert HOSTILE in [r["error_message"] for r in cli.json("logs", str(sid))]
    jsonl = [json.loads(line) for line in cli.ok("logs", str(sid), "--jsonl").stdout.splitlines()]
    assert HOSTILE in [r["error_message"] for r in jsonl]
    rows = list(csv.DictReader(io.StringIO(cli.ok("logs", str(sid), "--csv").stdout)))
    assert HOSTILE in [r["error_message"] for r in rows]
    assert any(m["content"] == HOSTILE for m in cli.json("session", "transcript", str(sid)))


def test_error_lines_show_controls(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["flow", "validate", str(tmp_path / f"x{HOSTILE}.yaml")])
    assert result.exit_code != 0
    assert not DANGEROUS.search(result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1


def test_emoji_codes_in_stored_names_stay_text(tmp_path: Path) -> None:
    """A panel's title carries stored text (a role's name): `:warning:` stays those nine
    characters on a terminal, as in every other cell."""
    runner = CliRunner()
    db = str(tmp_path / "flowcli.db")
    added = runner.invoke(app, ["--db", db, "role", "add", ":warning: lead", "--prompt", "p"])
    assert added.exit_code == 0, added.output
    shown = runner.invoke(app, ["--db", db, "role", "show", ":warning: lead"], env=WIDE_ENV)
    assert shown.exit_code == 0, shown.output
    assert ":warning: lead" in shown.stdout and "\u26a0" not in shown.stdout
