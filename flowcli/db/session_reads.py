"""The reads behind ``session list`` and ``session show``, as SQL text on a StepTx.

One implementation for both databases: the statements are plain SQL in the StepTx's
paramstyle, run on the bare sqlite3 driver for a SQLite file (so these commands import
no SQLAlchemy) and on SQLAlchemy's DBAPI connection elsewhere. Rows come back shaped as
SQLAlchemy Core returned them (datetimes, booleans: flowcli.db.direct_reads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowcli.db.direct_reads import typed_row
from flowcli.db.step_tx import StepTx

SESSION_LIST_COLUMNS = (
    "id",
    "status",
    "flow_template_id",
    "topic",
    "current_step_id",
    "current_round",
    "executed_steps_count",
    "error_reason",
    "created_at",
    "updated_at",
    "ended_at",
)
SESSION_DETAIL_COLUMNS = (
    "id",
    "topic",
    "flow_template_id",
    "status",
    "current_step_id",
    "current_round",
    "executed_steps_count",
    "error_reason",
    "created_at",
    "updated_at",
    "ended_at",
    "lease_owner",
    "lease_expires_at",
    "flow_snapshot",
    "variables",
)


def list_session_rows(
    tx: StepTx,
    *,
    statuses: list[str] | None = None,
    limit: int | None = None,
    flow_id: int | None = None,
    since: datetime | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Sessions, oldest first (or newest first), filtered by flow, creation time, status."""
    p = tx.p
    where: list[str] = []
    params: dict[str, Any] = {}
    if flow_id is not None:
        where.append(f"flow_template_id = {p('flow')}")
        params["flow"] = flow_id
    if since is not None:
        where.append(f"created_at >= {p('since')}")
        params["since"] = since
    if statuses:
        marks = ", ".join(p(f"s{i}") for i in range(len(statuses)))
        where.append(f"status IN ({marks})")
        params.update({f"s{i}": s for i, s in enumerate(statuses)})
    sql = f"SELECT {', '.join(SESSION_LIST_COLUMNS)} FROM sessions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {p('limit')}"
        params["limit"] = limit
    elif offset and tx.sqlite:
        sql += " LIMIT -1"  # SQLite takes OFFSET only after a LIMIT
    if offset:
        sql += f" OFFSET {p('offset')}"
        params["offset"] = offset
    tx.cur.execute(sql, params)
    return [typed_row("sessions", SESSION_LIST_COLUMNS, r) for r in tx.cur.fetchall()]


def session_detail_rows(tx: StepTx, session_id: int) -> dict[str, Any] | None:
    """One session's columns for ``session show``, with its log counts by status, its
    message count and its roles (ref, role id, role name); None if there is none."""
    p = tx.p
    tx.cur.execute(
        f"SELECT {', '.join(SESSION_DETAIL_COLUMNS)} FROM sessions WHERE id = {p('id')}",
        {"id": session_id},
    )
    found = tx.cur.fetchone()
    if found is None:
        return None
    row = typed_row("sessions", SESSION_DETAIL_COLUMNS, found)
    tx.cur.execute(
        "SELECT status, count(*) FROM step_execution_logs "
        f"WHERE session_id = {p('sid')} GROUP BY status",
        {"sid": session_id},
    )
    row["log_counts"] = {status: int(n) for status, n in tx.cur.fetchall()}
    tx.cur.execute(
        f"SELECT count(*) FROM messages WHERE session_id = {p('sid')}", {"sid": session_id}
    )
    row["message_count"] = int(tx.cur.fetchone()[0])
    tx.cur.execute(
        "SELECT sr.role_ref, sr.role_id, r.name FROM session_roles sr "
        f"JOIN roles r ON r.id = sr.role_id WHERE sr.session_id = {p('sid')} ORDER BY sr.id",
        {"sid": session_id},
    )
    row["roles"] = [
        {"role_ref": ref, "role_id": role_id, "name": name}
        for ref, role_id, name in tx.cur.fetchall()
    ]
    return row
