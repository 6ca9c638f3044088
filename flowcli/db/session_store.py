"""Sessions and their log rows through SQLAlchemy Core, outside the step hot path.

Lifecycle changes, explain, fork and skip read and write sessions here, always inside a
transaction the caller opened with ``Database.write()`` or ``read()``. The engine's own
step (log row, message, new position) is written by flowcli.db.step_tx, which shares
SessionRow and the version-checked update rule with this module.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

# The row type and constants live in flowcli.db.session_row (no SQLAlchemy there).
from flowcli.db.session_row import (  # noqa: F401
    ENDED_STATUSES,
    SESSION_POSITION_COLUMNS,
    SESSION_STATUSES,
    SessionRow,
    utcnow,
)
from flowcli.db.tables import (
    messages_table,
    roles_table,
    session_roles_table,
    sessions_table,
    step_logs_table,
)
from flowcli.errors import NotFoundError

sessions_t = sessions_table
messages_t = messages_table
logs_t = step_logs_table
session_roles_t = session_roles_table
roles_t = roles_table


_SESSION_COLS = [sessions_t.c[name] for name in SessionRow.__dataclass_fields__]


def load_session(conn: Connection, session_id: int, *, for_update: bool = False) -> SessionRow:
    stmt = select(*_SESSION_COLS).where(sessions_t.c.id == session_id)
    if for_update and conn.dialect.name != "sqlite":
        # SQLite's BEGIN IMMEDIATE already holds the write lock; elsewhere lock the row.
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFoundError(f"session {session_id} does not exist")
    return SessionRow(*row)


def update_session(conn: Connection, row: SessionRow, values: dict[str, Any]) -> None:
    """Write ``values`` if the session is still at the version read (no lost update):
    the one version-checked update (flowcli.db.step_tx), on this connection."""
    from flowcli.db.step_tx import StepTx

    StepTx.over(conn).update_session(row, values)


def next_execution_order(conn: Connection, row: SessionRow) -> int:
    """The number of the session's next log row (flowcli.db.step_tx has the rule)."""
    current = conn.execute(
        select(func.max(logs_t.c.execution_order)).where(logs_t.c.session_id == row.id)
    ).scalar()
    return max(int(current or 0), row.executed_steps_count or 0) + 1


def fetch_log(conn: Connection, log_id: int) -> dict[str, Any]:
    row = conn.execute(select(logs_t).where(logs_t.c.id == log_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"log {log_id} does not exist")
    return dict(row)


def fetch_message(conn: Connection, message_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(messages_t).where(messages_t.c.id == message_id)).mappings().first()
    return dict(row) if row else None
