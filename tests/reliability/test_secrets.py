"""An API key never leaks (issue 14), whatever a hostile LLM server echoes back.

A local server (tests/llm_server.py) echoes the key it was sent in every shape of
ECHO_SHAPES: raw, straddling the 200th character of an error body (where bodies used to be
cut *before* scrubbing), JSON-escaped (``sk\\u002d…`` and every character escaped),
percent-encoded, in a 200 reply's content and model, in a malformed reply. The key reaches
flowcli from FLOWCLI_LLM_API_KEY, or only inside ``--llm-base-url http://user:KEY@…``.
Afterwards no part of the key is anywhere: stdout, stderr, every column of every row,
the database file itself, and every export.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from tests.llm_server import ECHO_SHAPES, Behaviour, FakeLLM
from tests.reliability.kill import CLI_ENV

KEY = "sk-proj-Q9x7Tm3vL2pR8wK4-nB6yH1cJ5dF0gZa"
WINDOW = 12  # no run of this many characters of the key may appear anywhere

FLOW = textwrap.dedent(
    """
    name: secret
    roles: {A: {prompt: You are A.}}
    steps:
      - {speaker_role_ref: A, task_type: comment, context_scope: none}
    """
)


def leaks(text: str) -> list[str]:
    """The shapes of the key found in ``text``: raw pieces, percent-encoded, JSON-escaped."""
    found = [
        KEY[i : i + WINDOW] for i in range(len(KEY) - WINDOW + 1) if KEY[i : i + WINDOW] in text
    ]
    for shape in (quote(KEY, safe=""), KEY.replace("-", "\\u002d"), "\\u0073\\u006b\\u002d"):
        if shape in text:
            found.append(shape)
    return found


class Recorder:
    """Runs flowcli commands and keeps everything they printed."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.printed: list[str] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = CliRunner().invoke(
            app, ["--db", str(self.db), *args], env={**CLI_ENV, **(env or {})}
        )
        self.printed += [result.stdout, result.stderr]
        return result


def _run_every_shape(
    flowcli: Recorder, llm: FakeLLM, base_url: str, env: dict[str, str]
) -> list[int]:
    (flowcli.db.parent / "flow.yaml").write_text(FLOW, encoding="utf-8")
    flow_id = json.loads(
        flowcli("flow", "import", str(flowcli.db.parent / "flow.yaml"), "--json").stdout
    )["id"]
    llm_args = ["--responder", "openai", "--llm-model", "m", "--llm-base-url", base_url]
    sessions = []
    for shape in ECHO_SHAPES:
        created = flowcli("session", "create", "--flow", str(flow_id), "--topic", shape)
        assert created.exit_code == 0, created.output
        session_id = int(created.stdout.strip())
        sessions.append(session_id)
        llm.then(Behaviour(kind="echo", shape=shape))
        ran = flowcli(
            "run-next",
            str(session_id),
            *llm_args,
            "--retries",
            "0",
            "--llm-retries",
            "0",
            "--json",
            env=env,
        )
        assert ran.exit_code in (0, 1), ran.output
    return sessions


def _unreachable(flowcli: Recorder, flow_session: int, url: str, env: dict[str, str]) -> None:
    """Connection refused: the message names the server, with its credentials masked."""
    flowcli("session", "resume", str(flow_session))
    llm_args = ["--responder", "openai", "--llm-model", "m", "--llm-base-url", url]
    ran = flowcli(
        "run-next", str(flow_session), *llm_args, "--retries", "0", "--llm-retries", "0", env=env
    )
    assert ran.exit_code == 1
    assert "user:***@127.0.0.1" in ran.stderr, ran.stderr


def _exports(flowcli: Recorder, sessions: list[int]) -> None:
    flowcli("session", "list", "--json")
    for session_id in sessions:
        sid = str(session_id)
        for args in (
            ("logs", sid, "--json"),
            ("logs", sid, "--csv"),
            ("logs", sid, "--jsonl"),
            ("logs", sid),
            ("logs", "stats", sid),
            ("session", "show", sid, "--json"),
            ("session", "show", sid),
            ("session", "transcript", sid),
            ("explain", sid, "--json"),
        ):
            flowcli(*args)
        rows = json.loads(flowcli("logs", sid, "--json").stdout)
        for row in rows:
            flowcli("logs", "show", str(row["id"]), "--json")
            flowcli("logs", "show", str(row["id"]))


def _every_stored_value(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        values = [repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')]
    finally:
        conn.close()
    return "\n".join(values)


@pytest.mark.parametrize("how", ["env-key", "key-in-url"])
def test_the_api_key_appears_nowhere(tmp_path: Path, fake_llm: FakeLLM, how: str) -> None:
    flowcli = Recorder(tmp_path / "secrets.db")
    host = fake_llm.base_url.removeprefix("http://")
    if how == "env-key":
        base_url, env = fake_llm.base_url, {"FLOWCLI_LLM_API_KEY": KEY}
    else:
        base_url, env = f"http://user:{KEY}@{host}", {}
    sessions = _run_every_shape(flowcli, fake_llm, base_url, env)
    assert len(fake_llm.requests) == len(ECHO_SHAPES)
    if how == "key-in-url":
        _unreachable(flowcli, sessions[0], f"http://user:{KEY}@127.0.0.1:9/v1", env)
    _exports(flowcli, sessions)

    assert leaks("\n".join(flowcli.printed)) == []
    assert leaks(_every_stored_value(flowcli.db)) == []
    for file in flowcli.db.parent.glob("secrets.db*"):
        assert KEY.encode() not in file.read_bytes(), file.name
    # the failures said what happened, with the secret masked, not nothing at all
    printed = "\n".join(flowcli.printed)
    assert "LLM rejected the request: HTTP 400" in printed
    assert "***" in printed
