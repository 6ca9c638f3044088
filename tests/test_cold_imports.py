"""What a command imports decides how fast it starts: --help must not import SQLAlchemy or
Alembic, and the one-step commands on a SQLite file (run-next, explain, session show and
list, logs) import neither, nor Jinja2, httpx, pydantic or the flow-file libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env


def imported_top_levels(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flowcli", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
    return names


def test_help_imports_neither_sqlalchemy_nor_alembic() -> None:
    names = imported_top_levels("--help")
    assert "typer" in names
    assert not names & {"sqlalchemy", "alembic", "pydantic", "yaml", "jinja2", "httpx", "textual"}


def test_logs_imports_neither_sqlalchemy_nor_alembic(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    env = subprocess_env()
    subprocess.run(
        [sys.executable, "-m", "flowcli", "--db", str(db), "demo"],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    names = imported_top_levels("--db", str(db), "logs", "1")
    assert "typer" in names and "sqlite3" in names
    assert not names & {"sqlalchemy", "alembic", "pydantic", "yaml", "jinja2", "httpx", "textual"}


# What one-step commands must not import on a SQLite file (issue 16): the schema check,
# the session read, the step and its report, and the reads run on the bare sqlite3 driver.
HEAVY = {"sqlalchemy", "alembic", "jinja2", "httpx", "pydantic", "yaml", "textual"}
# A flow with the built-in template and no conditions: nothing in it needs Jinja.
PLAIN_FLOW = """
roles:
  A: {prompt: "You are A."}
  B: {prompt: "You are B."}
name: plain
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - {speaker_role_ref: B, target_role_ref: A, task_type: answer_question,
     context_scope: last_message}
"""


def _modules_after(*args: str) -> set[str]:
    """The top-level packages a flowcli process has loaded when its command is done."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['flowcli', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('flowcli', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "finally:\n"
        "    sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("MODULES ")][-1]
    return {name.split(".")[0] for name in line.split()[1:]}


def test_one_step_commands_on_sqlite_import_nothing_heavy(tmp_path: Path) -> None:
    import json

    db = tmp_path / "plain.db"
    flow = tmp_path / "plain.yaml"
    flow.write_text(PLAIN_FLOW)
    env = subprocess_env()

    def flowcli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flowcli", "--db", str(db), *args],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return done.stdout

    flow_id = json.loads(flowcli("flow", "import", str(flow), "--json"))["id"]
    sid = str(json.loads(flowcli("session", "create", "--flow", str(flow_id), "--json"))["id"])
    commands = [
        ("run-next", sid),
        ("run-next", sid, "--json"),
        ("explain", sid),
        ("session", "show", sid),
        ("session", "list"),
        ("logs", sid, "--last", "50"),
    ]
    for command in commands:
        loaded = _modules_after("--db", str(db), *command)
        assert "flowcli" in loaded and "typer" in loaded
        assert not loaded & HEAVY, (command, sorted(loaded & HEAVY))
