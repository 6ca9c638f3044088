"""Reading step execution logs: filtered, ordered, streamed, followed, summarised.

Every query is driven by the (session_id, execution_order) index, so ``--last 50``
costs the same on a thousand rows as on a million, and exports stream row by row.
Also here: one log with its predecessor (``logs show``), per-step statistics, the
timeline's rows and the polling behind ``logs --follow``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from flowcli.db.json_text import loads_json
from flowcli.db.tables import (
    STEP_LOG_COLUMNS,
    messages_table,
    session_roles_table,
    sessions_table,
    step_logs_table,
)
from flowcli.errors import NotFoundError

if TYPE_CHECKING:
    from flowcli.db.connection import Database

logs_t = step_logs_table
LOG_COLUMNS = ("id", *STEP_LOG_COLUMNS)
LOG_STATUSES = ("pending", "running", "completed", "failed", "skipped", "timeout")
# A row in one of these states is still being written (a claimed network step).
IN_FLIGHT_STATUSES = ("pending", "running")
FAILURE_STATUSES = ("failed", "timeout")
SESSION_END_STATUSES = ("finished", "failed", "cancelled", "terminated")


@dataclass
class LogFilter:
    statuses: list[str] = field(default_factory=list)
    step_order: int | None = None
    round_index: int | None = None
    since: datetime | None = None
    last: int | None = None
    limit: int | None = None
    offset: int = 0
    # Only rows up to this execution_order (``--follow`` prints the rest as they come).
    until_order: int | None = None

    def matches(self, row: dict[str, Any], step_ids: list[int] | None) -> bool:
        """The filter in Python, for rows that ``--follow`` reads one poll at a time."""
        if self.statuses and row.get("status") not in self.statuses:
            return False
        if self.round_index is not None and row.get("round_index") != self.round_index:
            return False
        if self.since is not None:
            created = row.get("created_at")
            if created is None or created < self.since:
                return False
        return step_ids is None or row.get("step_id") in step_ids


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


def _conditions(conn: Connection, session_id: int, flt: LogFilter) -> list[Any]:
    conds: list[Any] = [logs_t.c.session_id == session_id]
    if flt.statuses:
        conds.append(logs_t.c.status.in_(flt.statuses))
    if flt.round_index is not None:
        conds.append(logs_t.c.round_index == flt.round_index)
    if flt.since is not None:
        conds.append(logs_t.c.created_at >= flt.since)
    if flt.until_order is not None:
        conds.append(logs_t.c.execution_order <= flt.until_order)
    if flt.step_order is not None:
        # The session's snapshot knows which step ids had that order when it ran.
        conds.append(logs_t.c.step_id.in_(step_ids_with_order(conn, session_id, flt.step_order)))
    return conds


_ALL_COLUMNS = [logs_t.c[c] for c in LOG_COLUMNS]
# What a list of executions shows (a table, a tree, a timeline): every column but the
# JSON payloads, which can be kilobytes a row and are read only by exports and `show`.
SUMMARY_COLUMNS = tuple(c for c in LOG_COLUMNS if c not in ("result_data", "context_snapshot"))


def iter_logs(
    conn: Connection,
    session_id: int,
    flt: LogFilter | None = None,
    *,
    columns: Sequence[str] = LOG_COLUMNS,
) -> Iterator[dict[str, Any]]:
    """Log rows oldest first, streamed from the server side in batches; each row holds
    ``columns`` (every column unless told, e.g. ``SUMMARY_COLUMNS``).

    ``--last N`` first finds the N-th newest matching execution_order by walking the
    index backwards, then streams forwards from it: both queries are index range scans,
    with no sort and nothing held in memory, whatever the table's size.
    """
    flt = flt or LogFilter()
    conds = _conditions(conn, session_id, flt)
    picked = _ALL_COLUMNS if columns is LOG_COLUMNS else [logs_t.c[c] for c in columns]
    stmt = select(*picked).where(*conds).order_by(logs_t.c.execution_order)
    if flt.last is not None:
        bound = conn.execute(
            select(logs_t.c.execution_order)
            .where(*conds)
            .order_by(logs_t.c.execution_order.desc())
            .limit(1)
            .offset(flt.last - 1)
        ).scalar()
        if bound is not None:
            stmt = stmt.where(logs_t.c.execution_order >= bound)
    else:
        if flt.limit is not None:
            stmt = stmt.limit(flt.limit)
        if flt.offset:
            stmt = stmt.offset(flt.offset)
    result = conn.execution_options(stream_results=True, yield_per=500).execute(stmt)
    for row in result.mappings():
        yield dict(row)


# --- following a running session ---------------------------------------------------------


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
    from flowcli.db.session_store import load_session

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
    data = _json_dict(log.get("result_data"))
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


def _json_dict(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def parse_json_column(raw: Any) -> Any:
    """A JSON Text column decoded; text that is not JSON is returned as it is."""
    if raw is None or not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted paths; lists and scalars are leaves."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def dict_diff(before: Any, after: Any) -> dict[str, Any]:
    """Keys added, removed and changed between two JSON objects (dotted paths)."""
    old, new = flatten(before), flatten(after)
    return {
        "added": {k: new[k] for k in new if k not in old},
        "removed": {k: old[k] for k in old if k not in new},
        "changed": {k: [old[k], new[k]] for k in new if k in old and old[k] != new[k]},
    }


def log_detail(db: Database, log_id: int) -> dict[str, Any]:
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


# --- statistics and timeline -------------------------------------------------------------


def percentile(sorted_values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of an ascending list (None when it is empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _step_infos(conn: Connection, session_id: int, step_ids: list[int]) -> dict[int, dict]:
    """Each step's order / speaker / task_type as it ran: one snapshot per step id."""
    if not step_ids:
        return {}
    first_ids = select(func.min(logs_t.c.id)).where(logs_t.c.session_id == session_id)
    rows = conn.execute(
        select(logs_t.c.step_id, logs_t.c.step_snapshot).where(
            logs_t.c.id.in_(first_ids.group_by(logs_t.c.step_id).scalar_subquery())
        )
    )
    return {int(step_id): step_info(snap) for step_id, snap in rows}


def step_stats(db: Database, session_id: int) -> dict[str, Any]:
    """Per step: runs (completed), skips, failures, duration p50/p95/max, peak memory.

    Durations are those of completed runs; memory is the peak over every execution.
    Executions whose rows `db prune --logs-only` dropped are counted from the summary it
    left in the session (``pruned`` says how many); percentiles of a step that has both
    summarised and remaining executions are those of the larger part.
    """
    from flowcli.db.log_summary import covered, load_summary, merge_summaries
    from flowcli.db.session_store import load_session

    per_step: dict[int, dict[str, Any]] = {}
    with db.read() as conn:
        load_session(conn, session_id)
        summary = load_summary(
            conn.execute(
                select(sessions_table.c.log_summary).where(sessions_table.c.id == session_id)
            ).scalar()
        )
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(
            select(
                logs_t.c.step_id,
                logs_t.c.status,
                logs_t.c.duration_ms,
                logs_t.c.memory_usage_mb,
                logs_t.c.execution_order,
            )
            .where(logs_t.c.session_id == session_id)
            .order_by(logs_t.c.execution_order)
        )
        for step_id, status, duration, memory, order in result:
            if summary is not None and covered(summary, order):
                continue  # restored from an archive: the summary already counts it
            entry = per_step.get(step_id)
            if entry is None:
                entry = per_step[step_id] = {
                    "executions": 0,
                    "runs": 0,
                    "skips": 0,
                    "failures": 0,
                    "durations": [],
                    "max_memory_mb": None,
                }
            entry["executions"] += 1
            if status == "completed":
                entry["runs"] += 1
                if duration is not None:
                    entry["durations"].append(int(duration))
            elif status == "skipped":
                entry["skips"] += 1
            elif status in FAILURE_STATUSES:
                entry["failures"] += 1
            if memory is not None and (
                entry["max_memory_mb"] is None or memory > entry["max_memory_mb"]
            ):
                entry["max_memory_mb"] = memory
        infos = _step_infos(conn, session_id, list(per_step))
    live: dict[str, dict[str, Any]] = {}
    for step_id, entry in per_step.items():
        durations = sorted(entry.pop("durations"))
        info = infos.get(step_id, {})
        live[str(step_id)] = {
            "order": info.get("order"),
            "speaker": info.get("speaker"),
            "task_type": info.get("task_type"),
            **entry,
            "duration_count": len(durations),
            "duration_total_ms": sum(durations),
            "p50_ms": percentile(durations, 0.50),
            "p95_ms": percentile(durations, 0.95),
            "max_ms": durations[-1] if durations else None,
        }
    if summary is not None:
        live = merge_summaries(
            summary, {"steps": live, "covers": [], "executions": 0, "summarised_at": None}
        )["steps"]
    steps = []
    totals = {"executions": 0, "runs": 0, "skips": 0, "failures": 0}
    for key, entry in live.items():
        step: dict[str, Any] = {
            "step_id": int(key),
            "order": entry.get("order"),
            "speaker": entry.get("speaker"),
            "task_type": entry.get("task_type"),
            **{k: int(entry.get(k) or 0) for k in totals},
            "max_memory_mb": entry.get("max_memory_mb"),
            "p50_ms": entry.get("p50_ms"),
            "p95_ms": entry.get("p95_ms"),
            "max_ms": entry.get("max_ms"),
        }
        steps.append(step)
        for k in totals:
            totals[k] += step[k]
    steps.sort(key=lambda s: (s["order"] if isinstance(s["order"], int) else 0, s["step_id"]))
    data: dict[str, Any] = {"session_id": session_id, "steps": steps, "total": totals}
    if summary is not None:
        data["pruned"] = {
            "executions": summary.get("executions"),
            "summarised_at": summary.get("summarised_at"),
        }
    return data


def _elapsed_ms(start: datetime, moment: datetime) -> float:
    return (moment - start).total_seconds() * 1000.0


def timeline(db: Database, session_id: int, flt: LogFilter | None = None) -> dict[str, Any]:
    """Each execution's start and end as offsets within the span of those shown.

    ``offset``/``length`` are fractions of the span (0…1) for drawing; ``*_ms`` are
    milliseconds from the first start.
    """
    from flowcli.db.session_store import load_session

    with db.read() as conn:
        load_session(conn, session_id)
        raw = list(iter_logs(conn, session_id, flt, columns=SUMMARY_COLUMNS))
    rows = []
    for log in raw:
        start = log.get("started_at") or log.get("created_at")
        end = log.get("completed_at")
        if start is not None and end is None and log.get("duration_ms") is not None:
            from datetime import timedelta

            end = start + timedelta(milliseconds=int(log["duration_ms"]))
        info = step_info(log.get("step_snapshot"))
        rows.append(
            {
                "id": log["id"],
                "execution_order": log["execution_order"],
                "round_index": log["round_index"],
                "loop_iteration": log["loop_iteration"],
                "attempt_count": log["attempt_count"],
                "order": info.get("order"),
                "speaker": info.get("speaker"),
                "task_type": info.get("task_type"),
                "status": log["status"],
                "result_type": log["result_type"],
                "error_message": log["error_message"],
                "duration_ms": log["duration_ms"],
                "started_at": start,
                "completed_at": end,
            }
        )
    starts = [r["started_at"] for r in rows if r["started_at"] is not None]
    ends = [r["completed_at"] or r["started_at"] for r in rows if r["started_at"] is not None]
    span_start = min(starts) if starts else None
    span_end = max(ends) if ends else None
    span_ms = _elapsed_ms(span_start, span_end) if span_start and span_end else 0.0
    for r in rows:
        if span_start is None or r["started_at"] is None:
            r.update(offset_ms=None, end_ms=None, offset=None, length=None)
            continue
        offset_ms = _elapsed_ms(span_start, r["started_at"])
        end_ms = _elapsed_ms(span_start, r["completed_at"] or r["started_at"])
        r["offset_ms"] = round(offset_ms, 3)
        r["end_ms"] = round(end_ms, 3)
        r["offset"] = round(offset_ms / span_ms, 6) if span_ms > 0 else 0.0
        r["length"] = round((end_ms - offset_ms) / span_ms, 6) if span_ms > 0 else 0.0
    return {
        "session_id": session_id,
        "span_start": span_start,
        "span_end": span_end,
        "span_ms": round(span_ms, 3),
        "rows": rows,
    }
