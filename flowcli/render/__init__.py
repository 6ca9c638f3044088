"""All terminal output: the only package that builds Rich tables, panels and trees.

Builders take plain data (dicts, dataclasses) and write results to stdout; notes and
progress go to stderr. ``print_json`` writes exactly one JSON document and nothing else.
Every stored string shown on a terminal passes through ``_esc`` (the sanitiser in
safe_text, then Rich markup escaping); machine formats keep the exact bytes. Where the
output goes (terminal, pager, pipe) is decided in render.output, tables in render.tables.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from rich.console import Console

from flowcli.render.output import out_console, settings
from flowcli.render.safe_text import visible
from flowcli.render.tables import Col, show_table

__all__ = ["Col", "out_console", "show_table"]


@lru_cache(maxsize=1)
def _err() -> Console:
    # soft_wrap: a note or an error is one logical line; the terminal wraps it, Rich does
    # not break it (a path split at column 80 cannot be copied back).
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def err_console() -> Console:
    return _err()


def utc_iso(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z``. A naive value is UTC (MRC's convention for storage)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return str(value)


def to_json(data: Any, *, indent: int | None = 2) -> str:
    return json.dumps(data, default=json_default, indent=indent, ensure_ascii=False)


def print_json(data: Any) -> None:
    """stdout gets exactly one JSON document."""
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def print_jsonl(rows: Iterable[dict[str, Any]]) -> None:
    write = sys.stdout.write
    for row in rows:
        write(json.dumps(row, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A progress or confirmation note, on stderr so stdout stays for results."""
    from rich.markup import escape

    if settings().quiet:
        return
    err_console().print(escape(visible(message)))


def warn(message: str) -> None:
    from rich.markup import escape

    err_console().print(f"[yellow]Warning:[/yellow] {escape(visible(message))}")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 step``, ``2 steps``."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def panel(body: Any, **kwargs: Any) -> Any:
    """A Rich panel; in a pipe it hugs its content instead of filling a 65,536-wide line."""
    from rich.panel import Panel

    kwargs.setdefault("expand", out_console().is_terminal)
    return Panel(body, **kwargs)


def revision_table(revisions: list[Any]) -> None:
    columns = [
        Col("revision"),
        Col("down", priority=2),
        Col("state"),
        Col("description", flex=True, min_width=20),
    ]
    rows = []
    for rev in revisions:
        marks = " ".join(m for m, on in (("head", rev.is_head), ("current", rev.is_current)) if on)
        rows.append(
            [
                _esc(rev.revision),
                _esc(rev.down_revision or "-"),
                marks,
                _esc(rev.doc.splitlines()[0]),
            ]
        )
    show_table(columns, rows, title="flowcli migrations")


# --- flows and roles -----------------------------------------------------------------

STATUS_STYLES = {
    "completed": "green",
    "finished": "green",
    "running": "cyan",
    "skipped": "yellow",
    "failed": "red",
    "timeout": "red",
    "pending": "dim",
    "not_started": "dim",
    "paused": "yellow",
    "cancelled": "magenta",
    "terminated": "magenta",
}


def _esc(value: Any) -> str:
    """Stored text made safe for a terminal: sanitised, then escaped for Rich markup."""
    text = visible(value)
    if "[" not in text and not text.endswith("\\"):
        return text  # nothing Rich would escape (the common case, once per cell)
    from rich.markup import escape

    return escape(text)


def _status(value: str | None) -> str:
    style = STATUS_STYLES.get(value or "", "")
    text = _esc(value or "-")
    return f"[{style}]{text}[/{style}]" if style else text


def local_time(value: datetime) -> datetime:
    """A stored time (naive UTC) in this machine's zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone()


def zone_name() -> str:
    """This machine's zone as a table header shows it once: ``UTC``, ``CET``, ``UTC+05:30``."""
    now = datetime.now().astimezone()
    name = now.tzname() or ""
    if name.isalpha():
        return name
    offset = now.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"


def _when(value: Any) -> str:
    """A time in a table cell: local, without the zone (the header names it once)."""
    if isinstance(value, datetime):
        return local_time(value).strftime("%Y-%m-%d %H:%M:%S")
    return _esc(value or "")


def _when_zoned(value: Any) -> str:
    """A time on its own (in a panel or a note): local, with the zone."""
    if isinstance(value, datetime):
        return f"{_when(value)} {zone_name()}"
    return _esc(value or "")


def timed(name: str) -> str:
    """A column header for times: ``started (CET)``."""
    return f"{name} ({zone_name()})"


def ago(value: Any, now: datetime | None = None) -> str:
    """A relative age: ``just now``, ``3 min ago``, ``5 h ago``, ``2 days ago``."""
    if not isinstance(value, datetime):
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    current = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = (current - value).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    if days < 60:
        return plural(days, "day") + " ago"
    return local_time(value).strftime("%Y-%m-%d")


FLOW_COLUMNS = [
    Col("id", "right"),
    Col("name", flex=True, min_width=14, max_width=40),
    Col("type", priority=2),
    Col("version", priority=3),
    Col("steps", "right", priority=1),
    Col("active", priority=4),
    Col("topic", flex=True, min_width=16, priority=2),
]


def flow_table(flows: list[dict[str, Any]]) -> None:
    rows = [
        [
            str(f["id"]),
            _esc(f["name"]),
            _esc(f["type"]),
            _esc(f.get("version")),
            str(f["step_count"]),
            "yes" if f.get("is_active") is not False else "no",
            _esc(f.get("topic") or ""),
        ]
        for f in flows
    ]
    show_table(FLOW_COLUMNS, rows, title="flows", empty="no flows yet (flowcli flow import FILE)")


def flow_tree(flow: dict[str, Any]) -> None:
    from rich.tree import Tree

    from flowcli.flows.snapshot import step_from_dict

    term = flow.get("termination_config") or {}
    title = f"[bold]{_esc(flow['name'])}[/bold] (flow {flow['id']}, {_esc(flow['type'])}"
    title += f", version {_esc(flow.get('version'))})" if flow.get("version") else ")"
    tree = Tree(title)
    if flow.get("topic"):
        tree.add(f"topic: {_esc(flow['topic'])}")
    tree.add(
        f"rounds: {term.get('max_rounds', 1)}, max steps: {term.get('max_steps', 1000)}"
        + (f", ends when: {_esc(term['end_condition'])}" if term.get("end_condition") else "")
    )
    if flow.get("responder"):
        tree.add(f"responder: {_esc(flow['responder'].get('type'))}")
    steps_node = tree.add("steps")
    for raw in flow["steps"]:
        step = step_from_dict(raw)
        label = f"[bold]{step.order}.[/bold] {_esc(step.speaker)}"
        if step.target:
            label += f" → {_esc(step.target)}"
        label += f"  [cyan]{_esc(step.task_type)}[/cyan]  context: {_esc(step.context_scope)}"
        node = steps_node.add(label)
        if step.description:
            node.add(f"[dim]{_esc(step.description)}[/dim]")
        if step.condition:
            node.add(f"[yellow]if[/yellow] {_esc(step.condition)} (skipped when false)")
        if step.loop is not None:
            node.add(
                f"[magenta]↺ loop[/magenta] back to step {step.loop.to_order}, "
                f"at most {step.loop.max_loops} time(s) "
                f"(body runs {step.loop.max_loops + 1}×)"
            )
            if step.exit_condition:
                kind = step.exit_condition.get("type")
                expr = step.exit_condition.get("expr")
                node.add(f"[magenta]exit loop[/magenta] when {_esc(expr if expr else kind)}")
        for w in step.warnings:
            node.add(f"[red]! {_esc(w)}[/red]")
    out_console().print(tree)


def role_table(roles: list[dict[str, Any]]) -> None:
    columns = [
        Col("id", "right"),
        Col("name", flex=True, min_width=12, max_width=30),
        Col("prompt", flex=True, min_width=20, max_width=80, priority=1),
    ]
    rows = [
        [str(r["id"]), _esc(r["name"]), _esc(" ".join(str(r["prompt"]).split()))] for r in roles
    ]
    show_table(columns, rows, title="roles", empty="no roles yet (flowcli role add NAME)")


def role_panel(role: dict[str, Any]) -> None:
    out_console().print(
        panel(_esc(role["prompt"]), title=f"role {role['id']}: {_esc(role['name'])}")
    )


# --- sessions ---------------------------------------------------------------------------


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
            _status(s["status"]),
            str(s["flow_template_id"]),
            _esc(s.get("current_round")),
            _esc(s.get("executed_steps_count")),
            _esc(s.get("topic") or ""),
            _when(s.get("created_at")),
            _esc(ago(s.get("updated_at"))),
        ]
        for s in sessions
    )
    show_table(columns, rows, title="sessions", empty="no sessions match")


def session_panel(data: dict[str, Any]) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("status", _status(data["status"]))
    grid.add_row("flow", f"{data['flow_template_id']} {_esc(data.get('flow_name') or '')}")
    grid.add_row("topic", _esc(data["topic"]))
    grid.add_row("round", _esc(data.get("current_round")))
    grid.add_row("executed steps", _esc(data.get("executed_steps_count")))
    grid.add_row("messages", _esc(data.get("message_count")))
    if data.get("log_counts"):
        grid.add_row(
            "log rows", ", ".join(f"{k}: {v}" for k, v in sorted(data["log_counts"].items()))
        )
    if data.get("error_reason"):
        grid.add_row("error", f"[red]{_esc(data['error_reason'])}[/red]")
    if data.get("variables"):
        grid.add_row("variables", _esc(to_json(data["variables"], indent=None)))
    if data.get("roles"):
        grid.add_row(
            "roles", ", ".join(f"{_esc(r['role_ref'])}={_esc(r['name'])}" for r in data["roles"])
        )
    if data.get("lease_owner"):
        grid.add_row(
            "claimed by",
            f"{_esc(data['lease_owner'])} until {_when_zoned(data['lease_expires_at'])}",
        )
    steps = []
    for s in data.get("steps", []):
        mark = "▶ " if s["current"] else "  "
        arrow = f" → {s['target']}" if s.get("target") else ""
        steps.append(
            f"{mark}{s['order']}. {_esc(s['speaker'])}{_esc(arrow)} ({_esc(s['task_type'])})"
        )
    if steps:
        grid.add_row("steps", "\n".join(steps))
    for w in data.get("warnings", []):
        grid.add_row("warning", f"[yellow]{_esc(w)}[/yellow]")
    out_console().print(panel(grid, title=f"session {data['id']}"))


def step_panel(payload: dict[str, Any], result: Any) -> None:
    """What one run-next did: the step, its decisions, the message, the duration, what next."""
    from rich.table import Table

    log = payload.get("log") or {}
    session = payload["session"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    step = result.step
    if step is not None:
        arrow = f" → {step.target}" if step.target else ""
        grid.add_row(
            "step", f"{step.order}. {_esc(step.speaker)}{_esc(arrow)} ({_esc(step.task_type)})"
        )
    if log:
        grid.add_row(
            "execution",
            f"#{log['execution_order']} round {log['round_index']}, "
            f"loop iteration {log['loop_iteration']}, attempt {log['attempt_count']}",
        )
        grid.add_row("status", f"{_status(log['status'])} ({_esc(log['result_type'])})")
    if result.condition:
        grid.add_row("condition", f"{_esc(result.condition)} → {result.condition_value}")
    decision = result.decision
    if decision is not None and decision.loop_result:
        grid.add_row(
            "loop", f"{decision.loop_result} (loop_check_result={decision.loop_check_result})"
        )
    message = payload.get("message")
    if message:
        grid.add_row("message", _esc(message["content"]))
    if result.error:
        grid.add_row("error", f"[red]{_esc(result.error)}[/red]")
    if log.get("duration_ms") is not None:
        grid.add_row("duration", f"{log['duration_ms']} ms")
    if decision is not None:
        grid.add_row("next", _esc(decision.reason))
    grid.add_row(
        "session",
        f"{_status(session['status'])}, round {session['current_round']}, "
        f"{plural(session['executed_steps_count'] or 0, 'step')} executed",
    )
    title = (
        f"session {session['id']}: step executed"
        if not result.failed
        else f"session {session['id']}: step failed"
    )
    out_console().print(panel(grid, title=title, border_style="red" if result.failed else "green"))


def explain_panel(data: dict[str, Any], title: str | None = None) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("status", _status(data["status"]))
    step = data.get("step")
    if step is None:
        grid.add_row("next step", f"none: {_esc(data.get('blocked_reason'))}")
    else:
        arrow = f" → {step['target']}" if step.get("target") else ""
        grid.add_row(
            "next step",
            f"{step['order']}. {_esc(step['speaker'])}{_esc(arrow)} "
            f"({_esc(step['task_type'])}), context: {_esc(step['context_scope'])}",
        )
        if data.get("will_start"):
            grid.add_row("", "the session starts with this step")
        if not data.get("runnable"):
            grid.add_row("blocked", f"[red]{_esc(data.get('blocked_reason'))}[/red]")
        prev = data.get("previous")
        if prev and prev.get("decision"):
            grid.add_row(
                "why", f"execution #{prev['execution_order']} decided: {_esc(prev['decision'])}"
            )
        elif data.get("will_start"):
            grid.add_row("why", "it is the first step of the flow")
        cond = data.get("condition")
        if cond:
            value = cond["value"] if cond["error"] is None else f"error: {cond['error']}"
            grid.add_row("condition", f"{_esc(cond['expr'])} → {_esc(value)} ({cond['effect']})")
        else:
            grid.add_row("condition", "none (always runs)")
        grid.add_row("round", f"{data['round']} of {data['max_rounds']}")
        grid.add_row("loop iteration", f"{data['loop_iteration']} (attempt {data['attempt']})")
        for loop in data.get("loops", []):
            line = (
                f"step {loop['loop_step_order']} → back to {loop['back_to_order']}: "
                f"{loop['jumps_made']} of {loop['max_loops']} jumps made, "
                f"{loop['jumps_left']} left"
            )
            if loop.get("if_run"):
                line += f"; if run now: {loop['if_run']}"
            grid.add_row("loop", _esc(line))
        if data.get("engine_state") == "rebuilt from the log":
            grid.add_row("counters", "rebuilt from the log (the cached state was absent or stale)")
        grid.add_row(
            "termination",
            f"{data['executed_steps']} of {data['max_steps']} max steps; "
            f"{_count(data.get('steps_left_in_round'), 'step')} left in this round, "
            f"{_count(data.get('rounds_left'), 'round')} after it",
        )
        if data.get("end_condition"):
            grid.add_row("ends when", _esc(data["end_condition"]))
    for w in data.get("warnings", []):
        grid.add_row("warning", f"[yellow]{_esc(w)}[/yellow]")
    out_console().print(panel(grid, title=title or f"session {data['session_id']}: what runs next"))


def _count(value: Any, noun: str) -> str:
    return plural(value, noun) if isinstance(value, int) else f"? {noun}s"


class AutoProgress:
    """Rich progress on stderr while `auto` runs: steps done, current step, round, elapsed."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.steps = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> AutoProgress:
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("[bold]{task.completed}[/bold] steps"),
                TimeElapsedColumn(),
                console=err_console(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("starting", total=None)
        return self

    def update(self, result: Any) -> None:
        if not result.failed:
            self.steps += 1
        if self._progress is None:
            return
        step = result.step
        desc = f"step {step.order} {_esc(step.speaker)} ({_esc(step.task_type)})" if step else "…"
        round_ = (result.log or {}).get("round_index")
        if round_ is not None:
            desc += f", round {round_}"
        if result.failed:
            desc += f" [red]attempt failed: {_esc(str(result.error)[:60])}[/red]"
        self._progress.update(self._task, description=desc, completed=self.steps)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def auto_summary(summary: Any) -> None:
    status = summary.final_status
    line = (
        f"session {summary.session_id}: {plural(summary.steps_run, 'step')} run in "
        f"{summary.elapsed_s:.2f}s; status {_status(status)}; stopped: {_esc(summary.stop_reason)}"
    )
    if summary.failed_attempts:
        line += f"; {plural(summary.failed_attempts, 'failed attempt')}"
    before = getattr(summary, "stopped_before", None)
    if before:
        line += (
            f"; before step {_esc(before['order'])} {_esc(before['speaker'])} "
            f"({_esc(before['task_type'])}), round {before['round']}, "
            f"loop iteration {before['loop_iteration']}"
        )
    hit = getattr(summary, "breakpoint", None)
    if hit:
        line += f": {_esc(hit['reason'])}"
    err_console().print(line)


# --- logs -------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    return "" if value is None else f"{value} ms"


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
    from flowcli.db.log_queries import step_info

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
            label = _esc(" ".join(str(p) for p in parts).strip()) if info_ else ""
            if len(steps) < 1024:
                steps[snapshot] = label
        return label or _esc(f"step_id {row['step_id']}")

    def cells(row: dict[str, Any]) -> list[str]:
        return [
            str(row["execution_order"]),
            str(row["id"]),
            _esc(row.get("round_index")),
            _esc(row.get("loop_iteration")),
            _esc(row.get("attempt_count")),
            step_label(row),
            _status(row.get("status")),
            _esc(row.get("result_type") or ""),
            _ms(row.get("duration_ms")),
            _when(row.get("started_at") or row.get("created_at")),
            _esc(" ".join(str(row.get("error_message") or "").split())),
        ]

    return show_table(
        columns,
        (cells(r) for r in rows),
        title=title,
        empty="no executions match",
        stream_past_screen=True,
    )


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    from flowcli.db.log_queries import LOG_COLUMNS

    return {c: row.get(c) for c in LOG_COLUMNS}


def stream_json_array(rows: Iterable[dict[str, Any]]) -> None:
    """One JSON array, written row by row so memory stays flat."""
    write = sys.stdout.write
    write("[")
    first = True
    for row in rows:
        write(
            ("\n" if first else ",\n")
            + json.dumps(_plain_row(row), default=json_default, ensure_ascii=False)
        )
        first = False
    write("\n]\n" if not first else "]\n")
    sys.stdout.flush()


def stream_jsonl(rows: Iterable[dict[str, Any]]) -> None:
    print_jsonl(_plain_row(r) for r in rows)


def stream_csv(rows: Iterable[dict[str, Any]]) -> None:
    import csv

    from flowcli.db.log_queries import LOG_COLUMNS

    writer = csv.writer(sys.stdout)
    writer.writerow(LOG_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                ""
                if row.get(c) is None
                else (row[c].isoformat(sep=" ") if isinstance(row.get(c), datetime) else row[c])
                for c in LOG_COLUMNS
            ]
        )
    sys.stdout.flush()
