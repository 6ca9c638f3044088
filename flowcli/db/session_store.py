"""The SQL of a running session: reading it, locking it, and writing one step.

Where a step's log row, message and new session position are written. Core
statements on the model tables (no ORM unit of work on the hot path), always inside
a transaction the caller opened with ``Database.write()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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
from flowcli.errors import NotFoundError, SessionStateError

sessions_t = sessions_table
messages_t = messages_table
logs_t = step_logs_table
session_roles_t = session_roles_table
roles_t = roles_table

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


def next_execution_order(conn: Connection, session_id: int) -> int:
    current = conn.execute(
        select(func.max(logs_t.c.execution_order)).where(logs_t.c.session_id == session_id)
    ).scalar()
    return int(current or 0) + 1


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


def running_logs(conn: Connection, session_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(logs_t).where(logs_t.c.session_id == session_id, logs_t.c.status == "running")
    ).mappings()
    return [dict(r) for r in rows]


def insert_message(conn: Connection, values: dict[str, Any]) -> int:
    result = conn.execute(insert(messages_t).values(**values))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def fetch_message(conn: Connection, message_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(messages_t).where(messages_t.c.id == message_id)).mappings().first()
    return dict(row) if row else None


def session_role_ids(conn: Connection, session_id: int) -> dict[str, int]:
    rows = conn.execute(
        select(session_roles_t.c.role_ref, session_roles_t.c.id)
        .where(session_roles_t.c.session_id == session_id)
        .order_by(session_roles_t.c.id)
    )
    out: dict[str, int] = {}
    for ref, sr_id in rows:
        out.setdefault(ref, sr_id)
    return out


def resolve_role_id(conn: Connection, ref: str, roles_snapshot: dict[str, Any]) -> int:
    """A role ref's role id: the session's role mapping first, else a role of that name."""
    snap = roles_snapshot.get(ref)
    if isinstance(snap, dict) and snap.get("role_id") is not None:
        found = conn.execute(
            select(roles_t.c.id).where(roles_t.c.id == int(snap["role_id"]))
        ).scalar()
        if found is not None:
            return int(found)
    found = conn.execute(select(roles_t.c.id).where(roles_t.c.name == ref)).scalar()
    if found is None:
        raise SessionStateError(
            f"role {ref!r} is not defined: add it with `flowcli role add {ref} --prompt …`"
        )
    return int(found)


def role_prompt(conn: Connection, ref: str, roles_snapshot: dict[str, Any]) -> str | None:
    snap = roles_snapshot.get(ref)
    if isinstance(snap, dict) and snap.get("prompt"):
        return str(snap["prompt"])
    value = conn.execute(select(roles_t.c.prompt).where(roles_t.c.name == ref)).scalar()
    return str(value) if value is not None else None


def ensure_session_role(
    conn: Connection,
    session_id: int,
    ref: str,
    roles_snapshot: dict[str, Any],
    known: dict[str, int],
) -> int:
    """The session_roles id for ``ref``, created (as MRC did, by role name) when missing."""
    if ref in known:
        return known[ref]
    role_id = resolve_role_id(conn, ref, roles_snapshot)
    result = conn.execute(
        insert(session_roles_t).values(
            session_id=session_id, role_ref=ref, role_id=role_id, created_at=utcnow()
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    known[ref] = int(pk[0])
    return known[ref]


# --- messages as the engine and expressions see them -------------------------------

_speaker = session_roles_t.alias("speaker_sr")
_target = session_roles_t.alias("target_sr")
_MESSAGE_VIEW = select(
    messages_t.c.id,
    _speaker.c.role_ref.label("speaker"),
    _target.c.role_ref.label("target"),
    messages_t.c.content,
    messages_t.c.section,
    messages_t.c.round_index,
).select_from(
    messages_t.outerjoin(_speaker, _speaker.c.id == messages_t.c.speaker_session_role_id).outerjoin(
        _target, _target.c.id == messages_t.c.target_session_role_id
    )
)


def message_views(
    conn: Connection,
    session_id: int,
    *,
    scope: str | Sequence[str],
    round_: int,
    n: int = 5,
) -> list[tuple[Any, ...]]:
    """Rows (id, speaker, target, content, section, round) visible under ``scope``, oldest first."""
    base = _MESSAGE_VIEW.where(messages_t.c.session_id == session_id)
    if isinstance(scope, str):
        if scope in ("none", "__TOPIC__"):
            return []
        if scope == "all":
            stmt = base.order_by(messages_t.c.id)
        elif scope == "last_message":
            return _newest(conn, base, 1)
        elif scope == "last_n_messages":
            return _newest(conn, base, max(1, n))
        elif scope == "last_round":
            stmt = base.where(messages_t.c.round_index == round_ - 1).order_by(messages_t.c.id)
        else:
            stmt = base.where(_speaker.c.role_ref == scope).order_by(messages_t.c.id)
    else:
        refs = list(scope)
        if not refs:
            return []
        stmt = base.where(_speaker.c.role_ref.in_(refs)).order_by(messages_t.c.id)
    return [tuple(r) for r in conn.execute(stmt)]


def _newest(conn: Connection, base: Any, n: int) -> list[tuple[Any, ...]]:
    rows = [tuple(r) for r in conn.execute(base.order_by(messages_t.c.id.desc()).limit(n))]
    rows.reverse()
    return rows


def last_message_view(conn: Connection, session_id: int) -> tuple[Any, ...] | None:
    rows = _newest(conn, _MESSAGE_VIEW.where(messages_t.c.session_id == session_id), 1)
    return rows[0] if rows else None


def all_message_views(conn: Connection, session_id: int) -> Iterable[tuple[Any, ...]]:
    return message_views(conn, session_id, scope="all", round_=0)
