"""Building flows and sessions for tests, through the real commands."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import Cli


def write_flow(tmp: Path, yaml_text: str, name: str = "flow.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    return path


def import_flow(cli: Cli, yaml_text: str, *extra: str) -> int:
    path = write_flow(cli.db.parent, yaml_text, f"flow-{abs(hash(yaml_text))}.yaml")
    return int(cli.json("flow", "import", str(path), *extra)["id"])


def new_session(cli: Cli, yaml_text: str, *create_args: str) -> int:
    flow_id = import_flow(cli, yaml_text)
    return int(cli.json("session", "create", "--flow", str(flow_id), *create_args)["id"])


def logs(db: Path, session_id: int) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [
        dict(r)
        for r in con.execute(
            "SELECT * FROM step_execution_logs WHERE session_id = ? ORDER BY execution_order",
            (session_id,),
        )
    ]
    con.close()
    for row in rows:
        for key in ("step_snapshot", "context_snapshot", "result_data"):
            row[key] = json.loads(row[key]) if row[key] else None
    return rows


def session_row(db: Path, session_id: int) -> dict[str, Any]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone())
    con.close()
    return row


def messages(db: Path, session_id: int) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [
        dict(r)
        for r in con.execute(
            "SELECT m.*, sr.role_ref AS speaker FROM messages m "
            "LEFT JOIN session_roles sr ON sr.id = m.speaker_session_role_id "
            "WHERE m.session_id = ? ORDER BY m.id",
            (session_id,),
        )
    ]
    con.close()
    return rows


def step_orders(rows: list[dict[str, Any]]) -> list[int]:
    return [r["step_snapshot"]["order"] for r in rows]


ROLES = """
roles:
  A: {prompt: "You are A."}
  B: {prompt: "You are B."}
  C: {prompt: "You are C."}
"""
