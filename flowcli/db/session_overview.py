"""The session list a live view polls: newest first, with each session's flow name.

``session list`` shows every session oldest first; a screen that refreshes every second
wants the newest page only, filtered by status and flow, in one indexed query, and the
flows there are to filter by. Both only read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from flowcli.db.tables import flow_templates_table, sessions_table

if TYPE_CHECKING:
    from sqlalchemy import Connection

OVERVIEW_LIMIT = 500


def session_overview(
    conn: Connection,
    *,
    statuses: list[str] | None = None,
    flow_id: int | None = None,
    limit: int = OVERVIEW_LIMIT,
) -> list[dict[str, Any]]:
    """The newest ``limit`` sessions (id descending): id, status, flow id and name, topic,
    round, steps executed, error reason, created/updated/ended times."""
    s = sessions_table
    f = flow_templates_table
    stmt = (
        select(
            s.c.id,
            s.c.status,
            s.c.flow_template_id,
            f.c.name.label("flow_name"),
            s.c.topic,
            s.c.current_round,
            s.c.executed_steps_count,
            s.c.error_reason,
            s.c.created_at,
            s.c.updated_at,
            s.c.ended_at,
        )
        .select_from(s.outerjoin(f, f.c.id == s.c.flow_template_id))
        .order_by(s.c.id.desc())
        .limit(limit)
    )
    if statuses:
        if "not_started" in statuses:
            # MRC leaves status NULL on sessions it never started.
            stmt = stmt.where(s.c.status.in_(statuses) | s.c.status.is_(None))
        else:
            stmt = stmt.where(s.c.status.in_(statuses))
    if flow_id is not None:
        stmt = stmt.where(s.c.flow_template_id == flow_id)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def flows_with_sessions(conn: Connection) -> list[dict[str, Any]]:
    """Each flow that has sessions: id, name and how many, by id."""
    s = sessions_table
    f = flow_templates_table
    stmt = (
        select(s.c.flow_template_id.label("id"), f.c.name, func.count().label("sessions"))
        .select_from(s.outerjoin(f, f.c.id == s.c.flow_template_id))
        .group_by(s.c.flow_template_id, f.c.name)
        .order_by(s.c.flow_template_id)
    )
    return [dict(r) for r in conn.execute(stmt).mappings()]
