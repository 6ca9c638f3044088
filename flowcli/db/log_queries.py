"""Reading step execution logs: filtered, ordered, streamed, and one log in detail.

Every query is driven by the (session_id, execution_order) index, so ``--last 50``
costs the same on a thousand rows as on a million, and exports stream row by row.
Also here: one log with its predecessor and message (``logs show``). The polling loop of
``logs --follow`` is in log_follow.py, statistics and the timeline in log_stats.py, the
arithmetic they share in log_math.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from flowcli.db.json_text import json_dict, parse_json_column
from flowcli.db.log_math import dict_diff
from flowcli.db.log_rows import (  # noqa: F401 (re-exported for the other readers)
    LOG_COLUMNS,
    LOG_STATUSES,
    SUMMARY_COLUMNS,
    LogFilter,
    iter_log_rows,
    step_ids_for_order,
    step_info,
)
from flowcli.db.step_tx import StepTx
from flowcli.db.tables import (
    messages_table,
    session_roles_table,
    step_logs_table,
)
from flowcli.errors import NotFoundError

if TYPE_CHECKING:
    from flowcli.db.connection import Database

logs_t = step_logs_table
# A row in one of these states is still being written (a claimed network step).
IN_FLIGHT_STATUSES = ("pending", "running")
FAILURE_STATUSES = ("failed", "timeout")
SESSION_END_STATUSES = ("finished", "failed", "cancelled", "terminated")


def step_ids_with_order(conn: Connection, session_id: int, order: int) -> list[int]:
    """Ids of the steps that had ``order`` in the session's snapshot (as the session ran)."""
    return step_ids_for_order(StepTx.over(conn), session_id, order)


_ALL_COLUMNS = [logs_t.c[c] for c in LOG_COLUMNS]


def iter_logs(
    conn: Connection,
    session_id: int,
    flt: LogFilter | None = None,
    *,
    columns: Sequence[str] = LOG_COLUMNS,
) -> Iterator[dict[str, Any]]:
    """Log rows oldest first, streamed in batches (flowcli.db.log_rows.iter_log_rows, on
    the DBAPI connection under ``conn``); each row holds ``columns``."""
    return iter_log_rows(StepTx.over(conn), session_id, flt, columns=columns)


# --- the rows a follower reads -------------------------------------------------------------


def settled_order(conn: Connection, session_id: int) -> int:
    """The highest execution_order below which every row is final (no claim in flight).

    A claimed network step is always the session's newest row, so only the tail can be
    in flight.
    """
    newest = conn.execute(
        select(logs_t.c.execution_order, logs_t.c.status)
        .where(logs_t.c.session_id == session_id)
        .order_by(logs_t.c.execution_order.desc())
        .limit(1)
    ).first()
    if newest is None:
        return 0
    order, status = newest
    return int(order) - 1 if status in IN_FLIGHT_STATUSES else int(order)


def logs_after(
    conn: Connection, session_id: int, after_order: int, *, limit: int = 1000
) -> list[dict[str, Any]]:
    """The final rows after ``after_order``, oldest first, stopping at one still in flight."""
    rows = conn.execute(
        select(*_ALL_COLUMNS)
        .where(logs_t.c.session_id == session_id, logs_t.c.execution_order > after_order)
        .order_by(logs_t.c.execution_order)
        .limit(limit)
    ).mappings()
    out = []
    for row in rows:
        if row["status"] in IN_FLIGHT_STATUSES:
            break
        out.append(dict(row))
    return out


# --- one log -----------------------------------------------------------------------------


def get_log(conn: Connection, log_id: int) -> dict[str, Any]:
    row = conn.execute(select(*_ALL_COLUMNS).where(logs_t.c.id == log_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"log {log_id} does not exist")
    return dict(row)


def log_at(conn: Connection, session_id: int, execution_order: int) -> dict[str, Any] | None:
    """The session's log with this execution_order (a unique index lookup)."""
    row = (
        conn.execute(
            select(*_ALL_COLUMNS).where(
                logs_t.c.session_id == session_id, logs_t.c.execution_order == execution_order
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def previous_log(conn: Connection, log: dict[str, Any]) -> dict[str, Any] | None:
    """The session's execution just before ``log`` (execution_order − 1), if any."""
    return log_at(conn, log["session_id"], int(log["execution_order"]) - 1)


def message_for_log(conn: Connection, log: dict[str, Any]) -> dict[str, Any] | None:
    """The message a completed execution wrote (``result_data.message_id``), with role refs."""
    data = json_dict(log.get("result_data"))
    mid = data.get("message_id")
    if not isinstance(mid, int) or isinstance(mid, bool):
        return None
    msgs = message_contents(conn, log["session_id"], [mid])
    return msgs.get(mid)


def message_contents(
    conn: Connection, session_id: int, message_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """Messages of one session by id (speaker and target as role refs), in chunks."""
    speaker = session_roles_table.alias("speaker_sr")
    target = session_roles_table.alias("target_sr")
    m = messages_table
    out: dict[int, dict[str, Any]] = {}
    ids = sorted(set(message_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = conn.execute(
            select(
                m.c.id,
                speaker.c.role_ref.label("speaker"),
                target.c.role_ref.label("target"),
                m.c.content,
                m.c.section,
                m.c.round_index,
                m.c.created_at,
            )
            .select_from(
                m.outerjoin(speaker, speaker.c.id == m.c.speaker_session_role_id).outerjoin(
                    target, target.c.id == m.c.target_session_role_id
                )
            )
            .where(m.c.session_id == session_id, m.c.id.in_(chunk))
        ).mappings()
        for row in rows:
            out[int(row["id"])] = dict(row)
    return out


def load_log_detail(db: Database, log_id: int) -> dict[str, Any]:
    """Every column of one log, its JSON decoded, its message, and its context's diff
    against the session's previous execution (against nothing for the first one)."""
    with db.read() as conn:
        log = get_log(conn, log_id)
        prev = previous_log(conn, log)
        message = message_for_log(conn, log)
    data: dict[str, Any] = dict(log)
    for key in ("result_data", "step_snapshot", "context_snapshot"):
        data[key] = parse_json_column(log[key])
    before = parse_json_column(prev["context_snapshot"]) if prev else {}
    data["step"] = step_info(log.get("step_snapshot"))
    data["message"] = message
    data["previous_log_id"] = prev["id"] if prev else None
    data["context_diff"] = dict_diff(before, data["context_snapshot"])
    return data
