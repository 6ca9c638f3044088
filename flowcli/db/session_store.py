"""Sessions and their log rows through SQLAlchemy Core, outside the step hot path.

Lifecycle changes, explain, fork and skip read and write sessions here, always inside a
transaction the caller opened with ``Database.write()`` or ``read()``. The engine's own
step (log row, message, new position) is written by flowcli.db.step_tx, which shares
SessionRow and the version-checked update rule with this module.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

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


def update_session(
    conn: Connection, row: SessionRow, values: dict[str, Any], *, bump_version: bool = True
) -> None:
    """Write ``values`` if the session is still at the version read (no lost update)."""
    values = dict(values)
    values.setdefault("updated_at", utcnow())
    if bump_version:
        values["version"] = (row.version or 0) + 1
    cond = sessions_t.c.id == row.id
    if row.version is None:
        cond = and_(cond, sessions_t.c.version.is_(None))
    else:
        cond = and_(cond, sessions_t.c.version == row.version)
    result = conn.execute(update(sessions_t).where(cond).values(**values))
    if result.rowcount != 1:
        from flowcli.errors import SessionBusyError

        raise SessionBusyError(
            f"session {row.id} was changed by another process meanwhile; nothing was written"
        )
    for key, value in values.items():
        setattr(row, key, value)


def next_execution_order(conn: Connection, row: SessionRow) -> int:
    """The number of the session's next log row (flowcli.db.step_tx has the rule)."""
    current = conn.execute(
        select(func.max(logs_t.c.execution_order)).where(logs_t.c.session_id == row.id)
    ).scalar()
    return max(int(current or 0), row.executed_steps_count or 0) + 1


def insert_log(conn: Connection, values: dict[str, Any]) -> int:
    result = conn.execute(insert(logs_t).values(**values))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def update_log(conn: Connection, log_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(logs_t).where(logs_t.c.id == log_id).values(**values))


def fetch_log(conn: Connection, log_id: int) -> dict[str, Any]:
    row = conn.execute(select(logs_t).where(logs_t.c.id == log_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"log {log_id} does not exist")
    return dict(row)


def fetch_message(conn: Connection, message_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(messages_t).where(messages_t.c.id == message_id)).mappings().first()
    return dict(row) if row else None
