"""``logs``: a session's executions as a table (streamed and paged when long), or as
JSON, JSON lines or CSV written row by row so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flowcli.render.formatting import cell_time, escaped, milliseconds, styled_status, timed
from flowcli.render.tables import Col, show_table

LOG_COLUMNS_SHOWN = [
    # A long log streams with widths from its first rows; orders and ids grow after them.
    Col("#", "right", stream_width=5),
    # the log id (`flowcli log ID`, `session fork --at ID`)
    Col("log", "right", priority=7, stream_width=6),
    Col("round", "right", priority=3),
    Col("loop", "right", priority=5),
    Col("try", "right", priority=6),
    Col("step", flex=True, min_width=14, max_width=40),
    Col("status"),
    Col("result", priority=2),
    Col("duration", "right", priority=4),
    Col("started", priority=3),
    Col("error", flex=True, min_width=16, max_width=60, priority=1),
]


def logs_table(rows: Iterable[dict[str, Any]], title: str | None = None) -> int:
    """A session's executions; streams (and pages) when there are many."""
    from flowcli.db.log_rows import step_info

    columns = list(LOG_COLUMNS_SHOWN)
    columns[9] = Col(timed("started"), priority=3)
    # A session's rows share a few step snapshots: each is decoded once, not per row.
    steps: dict[Any, str] = {}

    def step_label(row: dict[str, Any]) -> str:
        snapshot = row.get("step_snapshot")
        label = steps.get(snapshot)
        if label is None:
            info_ = step_info(snapshot)
            parts = (
                info_.get("order", "?"),
                info_.get("speaker") or "",
                info_.get("task_type") or "",
            )
            label = escaped(" ".join(str(p) for p in parts).strip()) if info_ else ""
            if len(steps) < 1024:
                steps[snapshot] = label
        return label or escaped(f"step_id {row['step_id']}")

    def cells(row: dict[str, Any]) -> list[str]:
        return [
            str(row["execution_order"]),
            str(row["id"]),
            escaped(row.get("round_index")),
            escaped(row.get("loop_iteration")),
            escaped(row.get("attempt_count")),
            step_label(row),
            styled_status(row.get("status")),
            escaped(row.get("result_type") or ""),
            milliseconds(row.get("duration_ms")),
            cell_time(row.get("started_at") or row.get("created_at")),
            escaped(" ".join(str(row.get("error_message") or "").split())),
        ]

    return show_table(
        columns,
        (cells(r) for r in rows),
        title=title,
        empty="no executions match",
        stream_past_screen=True,
    )


def _as_batches(rows: Iterable[dict[str, Any]], size: int = 500) -> Any:
    from flowcli.db.log_rows import LOG_COLUMNS

    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(tuple(row.get(c) for c in LOG_COLUMNS))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def stream_json_array(rows: Iterable[dict[str, Any]]) -> None:
    """One JSON array of log rows (dicts), written batch by batch so memory stays flat
    (flowcli.render.exports writes the rows the export reads straight from the driver)."""
    from flowcli.db.log_rows import LOG_COLUMNS
    from flowcli.render.exports import write_json_array

    write_json_array(LOG_COLUMNS, _as_batches(rows))


def stream_jsonl(rows: Iterable[dict[str, Any]]) -> None:
    from flowcli.db.log_rows import LOG_COLUMNS
    from flowcli.render.exports import write_jsonl

    write_jsonl(LOG_COLUMNS, _as_batches(rows))


def stream_csv(rows: Iterable[dict[str, Any]], *, batch: int = 500) -> None:
    from flowcli.db.log_rows import LOG_COLUMNS
    from flowcli.render.exports import write_csv

    write_csv(LOG_COLUMNS, _as_batches(rows, batch))
