"""A session's per-step log summary: what ``logs stats`` needs once the log rows are gone.

``db prune --logs-only`` writes it into ``sessions.log_summary`` (JSON) before it drops
the rows; ``step_stats`` adds it to whatever rows remain. ``covers`` names the
execution orders summarised, so rows restored from an archive are not counted twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from flowcli.db.log_math import percentile
from flowcli.db.log_queries import FAILURE_STATUSES, step_info

SUMMARY_VERSION = 1


def summarise_logs(logs: Iterable[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The summary of these log rows (whole rows, as stored)."""
    steps: dict[str, dict[str, Any]] = {}
    durations: dict[str, list[int]] = {}
    orders: list[int] = []
    for log in logs:
        key = str(log["step_id"])
        orders.append(int(log["execution_order"]))
        entry = steps.get(key)
        if entry is None:
            info = step_info(log.get("step_snapshot"))
            entry = steps[key] = {
                "order": info.get("order"),
                "speaker": info.get("speaker"),
                "task_type": info.get("task_type"),
                "executions": 0,
                "runs": 0,
                "skips": 0,
                "failures": 0,
                "duration_count": 0,
                "duration_total_ms": 0,
                "p50_ms": None,
                "p95_ms": None,
                "max_ms": None,
                "max_memory_mb": None,
            }
            durations[key] = []
        entry["executions"] += 1
        status = log.get("status")
        if status == "completed":
            entry["runs"] += 1
            if isinstance(log.get("duration_ms"), int | float):
                durations[key].append(int(log["duration_ms"]))
        elif status == "skipped":
            entry["skips"] += 1
        elif status in FAILURE_STATUSES:
            entry["failures"] += 1
        memory = log.get("memory_usage_mb")
        if isinstance(memory, int | float) and (
            entry["max_memory_mb"] is None or memory > entry["max_memory_mb"]
        ):
            entry["max_memory_mb"] = memory
    for key, values in durations.items():
        values.sort()
        steps[key].update(
            duration_count=len(values),
            duration_total_ms=sum(values),
            p50_ms=percentile(values, 0.50),
            p95_ms=percentile(values, 0.95),
            max_ms=values[-1] if values else None,
        )
    return {
        "version": SUMMARY_VERSION,
        "summarised_at": now.isoformat(sep=" "),
        "executions": len(orders),
        "covers": _ranges(sorted(orders)),
        "steps": steps,
    }


def _ranges(orders: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for order in orders:
        if out and order <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], order)
        else:
            out.append([order, order])
    return out


def merge_summaries(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Two summaries of disjoint rows as one. Percentiles cannot be combined exactly; the
    larger sample's are kept."""
    if not old:
        return new
    steps = {k: dict(v) for k, v in old.get("steps", {}).items()}
    for key, entry in new["steps"].items():
        mine = steps.get(key)
        if mine is None:
            steps[key] = dict(entry)
            continue
        bigger = entry if entry["duration_count"] > mine.get("duration_count", 0) else mine
        for field in (
            "executions",
            "runs",
            "skips",
            "failures",
            "duration_count",
            "duration_total_ms",
        ):
            mine[field] = int(mine.get(field) or 0) + int(entry.get(field) or 0)
        mine["p50_ms"], mine["p95_ms"] = bigger.get("p50_ms"), bigger.get("p95_ms")
        for field in ("max_ms", "max_memory_mb"):
            values = [v for v in (mine.get(field), entry.get(field)) if v is not None]
            mine[field] = max(values) if values else None
    covers = sorted([*old.get("covers", []), *new["covers"]])
    merged: list[list[int]] = []
    for lo, hi in covers:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return {
        "version": SUMMARY_VERSION,
        "summarised_at": new["summarised_at"],
        "executions": int(old.get("executions") or 0) + new["executions"],
        "covers": merged,
        "steps": steps,
    }


def load_summary(raw: Any) -> dict[str, Any] | None:
    """A stored summary, or None when absent or not one flowcli wrote."""
    if not raw:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("version") != SUMMARY_VERSION:
        return None
    if not isinstance(data.get("steps"), dict) or not isinstance(data.get("covers"), list):
        return None
    return data


def covered(summary: dict[str, Any] | None, order: int) -> bool:
    """Whether the summary already counts the execution with this order."""
    if not summary:
        return False
    return any(
        isinstance(r, list) and len(r) == 2 and r[0] <= order <= r[1]
        for r in summary.get("covers", [])
    )
