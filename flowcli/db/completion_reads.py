"""The reads shell completion makes: the newest session and flow ids with a label.

Short and read-only, with short timeouts, and never creating a database: a completion
runs on every Tab press, against whatever ``--db`` or ``FLOWCLI_DB`` names.
"""

from __future__ import annotations

from typing import Any

Rows = list[tuple[Any, ...]]


def newest_sessions(database: str, limit: int) -> Rows:
    """(id, "status: topic") of the newest ``limit`` sessions."""
    return _rows(
        database,
        f"SELECT id, status || ': ' || topic FROM sessions ORDER BY id DESC LIMIT {int(limit)}",
    )


def newest_flows(database: str, limit: int) -> Rows:
    """(id, name) of the newest ``limit`` flows."""
    return _rows(
        database, f"SELECT id, name FROM flow_templates ORDER BY id DESC LIMIT {int(limit)}"
    )


def _rows(database: str, sql: str) -> Rows:
    if "://" not in database or database.startswith("sqlite:///"):
        return _sqlite_rows(database.removeprefix("sqlite:///"), sql)
    return _url_rows(database, sql)


def _sqlite_rows(path: str, sql: str) -> Rows:
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    file = Path(path).expanduser()
    if not file.is_file():
        return []
    conn = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True, timeout=0.5)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def _url_rows(url: str, sql: str) -> Rows:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    args = {"connect_timeout": 2} if url.startswith("postgresql") else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect() as conn:
            if url.startswith("postgresql"):
                conn.execute(text("SET statement_timeout = 2000"))
            return [tuple(r) for r in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()
