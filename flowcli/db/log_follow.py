"""``logs --follow``: the rows so far, then each new one as it is written, by polling.

Each poll is one short read transaction; a claim still in flight is never shown before
it settles (log_queries.settled_order, logs_after).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from flowcli.db.connection import Database
from flowcli.db.log_queries import (
    SESSION_END_STATUSES,
    LogFilter,
    iter_logs,
    logs_after,
    settled_order,
    step_ids_with_order,
)
from flowcli.db.session_store import load_session
from flowcli.db.tables import sessions_table


def follow_logs(
    db: Database,
    session_id: int,
    flt: LogFilter | None = None,
    *,
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """The matching rows so far, then each new one as it is written, until the session
    ends (finished, failed, cancelled or terminated). An unknown session fails here, before any row.

    Each poll reads the session's status and the rows after the last one seen in one
    read transaction, so the rows written by the transaction that ended the session are
    always yielded before following stops.
    """
    with db.read() as conn:
        load_session(conn, session_id)
    return _follow(db, session_id, flt or LogFilter(), interval, sleep)


def _follow(
    db: Database,
    session_id: int,
    flt: LogFilter,
    interval: float,
    sleep: Callable[[float], None],
) -> Iterator[dict[str, Any]]:
    with db.read() as conn:
        last_seen = settled_order(conn, session_id)
        step_ids = (
            step_ids_with_order(conn, session_id, flt.step_order)
            if flt.step_order is not None
            else None
        )
        yield from iter_logs(conn, session_id, replace(flt, until_order=last_seen))
    while True:
        with db.read() as conn:
            status = conn.execute(
                select(sessions_table.c.status).where(sessions_table.c.id == session_id)
            ).scalar()
            batch = logs_after(conn, session_id, last_seen)
        for row in batch:
            last_seen = row["execution_order"]
            if flt.matches(row, step_ids):
                yield row
        if batch:
            continue  # there may be more than one batch waiting
        if status in SESSION_END_STATUSES:
            return
        sleep(interval)
