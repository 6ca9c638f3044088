"""Reading step execution logs: filtered, ordered, streamed.

Every query is driven by the (session_id, execution_order) index, so ``--last 50``
costs the same on a thousand rows as on a million, and exports stream row by row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from flowcli.db.models import STEP_LOG_COLUMNS, sessions_table, step_logs_table

logs_t = step_logs_table
LOG_COLUMNS = ("id", *STEP_LOG_COLUMNS)
LOG_STATUSES = ("pending", "running", "completed", "failed", "skipped", "timeout")


@dataclass
class LogFilter:
    statuses: list[str] = field(default_factory=list)
    step_order: int | None = None
    round_index: int | None = None
    since: datetime | None = None
    last: int | None = None
    limit: int | None = None
    offset: int = 0


def step_info(step_snapshot: str | None) -> dict[str, Any]:
    """order / speaker / task_type of the step as it ran, from the log's snapshot."""
    if not step_snapshot:
        return {}
    try:
        data = json.loads(step_snapshot)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        "order": data.get("order"),
        "speaker": data.get("speaker_role_ref"),
        "target": data.get("target_role_ref"),
        "task_type": data.get("task_type"),
    }


def step_ids_with_order(conn: Connection, session_id: int, order: int) -> list[int]:
    """Ids of the steps that had ``order`` in the session's snapshot (as the session ran)."""
    from flowcli.engine.snapshot import loads_json

    sessions_t = sessions_table
    raw = conn.execute(
        select(sessions_t.c.flow_snapshot).where(sessions_t.c.id == session_id)
    ).scalar()
    data = loads_json(raw, {})
    steps = data.get("steps", []) if isinstance(data, dict) else []
    ids = []
    for step in steps:
        if (
            isinstance(step, dict)
            and str(step.get("order")) == str(order)
            and step.get("id") is not None
        ):
            ids.append(int(step["id"]))
    return ids


def _statement(conn: Connection, session_id: int, flt: LogFilter) -> Any:
    stmt = select(*[logs_t.c[c] for c in LOG_COLUMNS]).where(logs_t.c.session_id == session_id)
    if flt.statuses:
        stmt = stmt.where(logs_t.c.status.in_(flt.statuses))
    if flt.round_index is not None:
        stmt = stmt.where(logs_t.c.round_index == flt.round_index)
    if flt.since is not None:
        stmt = stmt.where(logs_t.c.created_at >= flt.since)
    if flt.step_order is not None:
        # The session's snapshot knows which step ids had that order when it ran.
        stmt = stmt.where(
            logs_t.c.step_id.in_(step_ids_with_order(conn, session_id, flt.step_order))
        )
    return stmt


def iter_logs(
    conn: Connection, session_id: int, flt: LogFilter | None = None
) -> Iterator[dict[str, Any]]:
    """Log rows oldest first, streamed from the server side in batches."""
    flt = flt or LogFilter()
    stmt = _statement(conn, session_id, flt)
    if flt.last is not None:
        newest = stmt.order_by(logs_t.c.execution_order.desc()).limit(flt.last).subquery()
        stmt = select(*newest.c).order_by(newest.c.execution_order)
    else:
        stmt = stmt.order_by(logs_t.c.execution_order)
        if flt.limit is not None:
            stmt = stmt.limit(flt.limit)
        if flt.offset:
            stmt = stmt.offset(flt.offset)
    result = conn.execution_options(stream_results=True, yield_per=500).execute(stmt)
    for row in result.mappings():
        yield dict(row)
