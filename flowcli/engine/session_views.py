"""What ``session list`` and ``session show`` print, read in one short read transaction.

Read through flowcli.db.session_reads on a StepTx, so on a SQLite file neither command
imports SQLAlchemy (flowcli.engine.lifecycle re-exports both functions beside the
session changes).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowcli.db.session_row import SESSION_STATUSES
from flowcli.errors import NotFoundError, SessionStateError, UsageError
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.db.connection import Database


def list_sessions(
    db: Database,
    status: list[str] | None = None,
    limit: int | None = None,
    *,
    flow_id: int | None = None,
    since: datetime | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Sessions (oldest first, or newest first for `session list`), filtered by status,
    flow and creation time (``since`` is naive UTC, as stored)."""
    from flowcli.db.session_reads import list_session_rows

    if status:
        bad = [s for s in status if s not in SESSION_STATUSES]
        if bad:
            raise UsageError(
                f"unknown status {bad[0]!r}; choose from {', '.join(SESSION_STATUSES)}"
            )
    with db.step_read() as tx:
        return list_session_rows(
            tx,
            statuses=status,
            limit=limit,
            flow_id=flow_id,
            since=since,
            offset=offset,
            newest_first=newest_first,
        )


def show_session(db: Database, session_id: int) -> dict[str, Any]:
    from flowcli.db.session_reads import session_detail_rows

    with db.step_read() as tx:
        row = session_detail_rows(tx, session_id)
    if row is None:
        raise NotFoundError(f"session {session_id} does not exist")
    flow_snapshot = row.pop("flow_snapshot")
    variables = row.pop("variables")
    counts = row.pop("log_counts")
    messages = row.pop("message_count")
    roles = row.pop("roles")
    data: dict[str, Any] = dict(row)
    data["variables"] = _vars(variables)
    data["log_counts"] = counts
    data["message_count"] = messages
    data["roles"] = roles
    try:
        snapshot = parse_snapshot(flow_snapshot)
        data["flow_name"] = snapshot.data.get("name")
        data["steps"] = [
            {
                "id": s.id,
                "order": s.order,
                "speaker": s.speaker,
                "target": s.target,
                "task_type": s.task_type,
                "current": s.id == row["current_step_id"],
            }
            for s in snapshot.steps
        ]
        data["warnings"] = snapshot.warnings()
    except SessionStateError as exc:
        data["steps"] = []
        data["warnings"] = [str(exc)]
    return data


def _vars(text: str | None) -> dict[str, Any]:
    # As SessionRow.vars(): a JSON object, anything else reads as no variables.
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
