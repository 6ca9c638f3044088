"""Building flows and sessions for tests, through the real commands."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import Cli


def write_flow(tmp: Path, yaml_text: str, name: str = "flow.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    return path


def import_flow(cli: Cli, yaml_text: str, *extra: str) -> int:
    import tempfile

    folder = cli.db.parent if isinstance(cli.db, Path) else Path(tempfile.mkdtemp())
    path = write_flow(folder, yaml_text, f"flow-{abs(hash(yaml_text))}.yaml")
    return int(cli.json("flow", "import", str(path), *extra)["id"])


def new_session(cli: Cli, yaml_text: str, *create_args: str) -> int:
    flow_id = import_flow(cli, yaml_text)
    return int(cli.json("session", "create", "--flow", str(flow_id), *create_args)["id"])


_ENGINES: dict[str, Any] = {}


def _url(db: Path | str) -> str:
    return f"sqlite:///{db}" if isinstance(db, Path) else db


def _engine(db: Path | str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = _url(db)
    if url not in _ENGINES:
        _ENGINES[url] = create_engine(url, poolclass=NullPool)
    return _ENGINES[url]


def dispose_engines() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def run_sql(db: Path | str, statement: str, **params: Any) -> list[Any]:
    """Execute one statement on the test database (a SQLite file or a PostgreSQL URL) and
    commit; a SELECT's rows come back as dicts."""
    from sqlalchemy import text

    with _engine(db).begin() as conn:
        result = conn.execute(text(statement), params)
        if result.returns_rows:
            return [dict(r) for r in result.mappings()]
    return []


def logs(db: Path | str, session_id: int) -> list[dict[str, Any]]:
    rows = run_sql(
        db,
        "SELECT * FROM step_execution_logs WHERE session_id = :sid ORDER BY execution_order",
        sid=session_id,
    )
    for row in rows:
        for key in ("step_snapshot", "context_snapshot", "result_data"):
            row[key] = json.loads(row[key]) if row[key] else None
    return rows


def session_row(db: Path | str, session_id: int) -> dict[str, Any]:
    return run_sql(db, "SELECT * FROM sessions WHERE id = :sid", sid=session_id)[0]


def messages(db: Path | str, session_id: int) -> list[dict[str, Any]]:
    return run_sql(
        db,
        "SELECT m.*, sr.role_ref AS speaker FROM messages m "
        "LEFT JOIN session_roles sr ON sr.id = m.speaker_session_role_id "
        "WHERE m.session_id = :sid ORDER BY m.id",
        sid=session_id,
    )


def step_orders(rows: list[dict[str, Any]]) -> list[int]:
    return [r["step_snapshot"]["order"] for r in rows]


ROLES = """
roles:
  A: {prompt: "You are A."}
  B: {prompt: "You are B."}
  C: {prompt: "You are C."}
"""


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children.

    Tests that prove a bomb is cut short bound the CPU it burns, not the wall-clock time:
    on a busy CI machine the wall clock also counts other processes' turns.
    """
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
