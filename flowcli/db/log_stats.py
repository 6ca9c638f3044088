"""Per-step statistics (``logs --stats``) and the timeline of a session's executions.

Statistics use the stored summary of the settled rows when there is one
(flowcli.db.log_summary) and read only the rows after it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from flowcli.db.connection import Database
from flowcli.db.log_math import percentile
from flowcli.db.log_queries import (
    FAILURE_STATUSES,
    SUMMARY_COLUMNS,
    LogFilter,
    iter_logs,
    logs_t,
    step_info,
)
from flowcli.db.log_summary import covered, load_summary, merge_summaries
from flowcli.db.session_store import load_session
from flowcli.db.tables import sessions_table


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
