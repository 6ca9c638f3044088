"""Sessions: ``session list`` (a table) and ``session show`` (one panel)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flowcli.render.formatting import (
    ago,
    cell_time,
    escaped,
    panel,
    styled_status,
    timed,
    zoned_time,
)
from flowcli.render.json_output import to_json
from flowcli.render.output import out_console
from flowcli.render.tables import Col, show_table


def session_table(sessions: Iterable[dict[str, Any]]) -> None:
    columns = [
        Col("id", "right"),
        Col("status"),
        Col("flow", "right", priority=2),
        Col("round", "right", priority=3),
        Col("steps", "right", priority=1),
        Col("topic", flex=True, min_width=16, max_width=60),
        Col(timed("created"), priority=4),
        Col("updated", priority=1),
    ]
    rows = (
        [
            str(s["id"]),
            styled_status(s["status"]),
            str(s["flow_template_id"]),
            escaped(s.get("current_round")),
            escaped(s.get("executed_steps_count")),
            escaped(s.get("topic") or ""),
            cell_time(s.get("created_at")),
            escaped(ago(s.get("updated_at"))),
        ]
        for s in sessions
    )
    show_table(columns, rows, title="sessions", empty="no sessions match")


def session_panel(data: dict[str, Any]) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("status", styled_status(data["status"]))
    grid.add_row("flow", f"{data['flow_template_id']} {escaped(data.get('flow_name') or '')}")
    grid.add_row("topic", escaped(data["topic"]))
    grid.add_row("round", escaped(data.get("current_round")))
    grid.add_row("executed steps", escaped(data.get("executed_steps_count")))
    grid.add_row("messages", escaped(data.get("message_count")))
    if data.get("log_counts"):
        grid.add_row(
            "log rows", ", ".join(f"{k}: {v}" for k, v in sorted(data["log_counts"].items()))
        )
    if data.get("error_reason"):
        grid.add_row("error", f"[red]{escaped(data['error_reason'])}[/red]")
    if data.get("variables"):
        grid.add_row("variables", escaped(to_json(data["variables"], indent=None)))
    if data.get("roles"):
        grid.add_row(
            "roles",
            ", ".join(f"{escaped(r['role_ref'])}={escaped(r['name'])}" for r in data["roles"]),
        )
    if data.get("lease_owner"):
        grid.add_row(
            "claimed by",
            f"{escaped(data['lease_owner'])} until {zoned_time(data['lease_expires_at'])}",
        )
    steps = []
    for s in data.get("steps", []):
        mark = "▶ " if s["current"] else "  "
        arrow = f" → {s['target']}" if s.get("target") else ""
        steps.append(
            f"{mark}{s['order']}. {escaped(s['speaker'])}{escaped(arrow)} "
            f"({escaped(s['task_type'])})"
        )
    if steps:
        grid.add_row("steps", "\n".join(steps))
    for w in data.get("warnings", []):
        grid.add_row("warning", f"[yellow]{escaped(w)}[/yellow]")
    out_console().print(panel(grid, title=f"session {data['id']}"))
