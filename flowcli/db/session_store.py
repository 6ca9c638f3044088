"""Sessions and their log rows through SQLAlchemy Core, outside the step hot path.

Lifecycle changes, explain, fork and skip read and write sessions here, always inside a
transaction the caller opened with ``Database.write()`` or ``read()``. The engine's own
step (log row, message, new position) is written by flowcli.db.step_tx, which shares
SessionRow and the version-checked update rule with this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

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

# Every status a session can have. 'terminated' is MRC's word for a forced stop (flowcli
# writes it when it cancels a session on a database MRC owns), 'cancelled' flowcli's own.
SESSION_STATUSES = (
    "not_started",
    "running",
    "paused",
    "finished",
    "failed",
    "cancelled",
    "terminated",
)
# Statuses after which a session runs no more steps.
ENDED_STATUSES = ("finished", "cancelled", "terminated")

SESSION_POSITION_COLUMNS = (
    "id",
    "status",
    "current_step_id",
    "current_round",
    "executed_steps_count",
    "error_reason",
)


def utcnow() -> datetime:
    """Naive UTC, as MRC stores timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class SessionRow:
    id: int
    topic: str
    flow_template_id: int
    flow_snapshot: str | None
    roles_snapshot: str | None
    status: str | None
    current_step_id: int | None
    current_round: int | None
    executed_steps_count: int | None
    error_reason: str | None
    version: int | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    engine_state: str | None
    variables: str | None
    created_at: datetime | None
    updated_at: datetime | None
    ended_at: datetime | None

    def position(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SESSION_POSITION_COLUMNS}

    def vars(self) -> dict[str, Any]:
        try:
            data = json.loads(self.variables) if self.variables else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


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
