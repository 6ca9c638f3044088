"""Batches on the terminal: the preview before acting (stderr), a dry run's table, the
progress display while a batch runs (stderr), its summary, and `batch list|show`."""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import cell_time, escaped, panel, styled_status
from flowcli.render.messages import err_console
from flowcli.render.output import out_console


def _esc(value: Any) -> str:
    """Stored text (topics, errors, selectors) as inert text: no Rich markup, and control
    characters (a terminal escape sequence in an LLM's error, say) shown escaped."""
    text = "" if value is None else str(value)
    if not text.isprintable():
        text = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
        )
    return escaped(text)


def _status(value: Any) -> str:
    if value is not None and not str(value).isprintable():
        return _esc(value)
    return styled_status(value)


VERBS = {
    "cancel": "cancel",
    "resume": "resume",
    "skip": "skip the current step of",
    "retry": "retry the failed step of",
    "auto": "run to the end",
}


def _sessions_table(rows: list[dict[str, Any]], title: str | None = None) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in ("id", "status", "flow", "topic", "error", "updated"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for s in rows:
        flow = s.get("flow") or ""
        table.add_row(
            str(s["id"]),
            _status(s.get("status")),
            f"{s.get('flow_template_id')} {_esc(flow)}".strip(),
            _esc((s.get("topic") or "")[:40]),
            _esc((s.get("error_reason") or "")[:40]),
            cell_time(s.get("updated_at")),
        )
    return table


def preview_view(plan: Any) -> None:
    """How many sessions match and the first few, before anything happens (stderr)."""
    console = err_console()
    taken = len(plan.ids)
    line = (
        f"{plan.matched:,} session(s) match [bold]{_esc(plan.where)}[/bold] "
        f"(evaluated in {plan.evaluated})"
    )
    if taken < plan.matched:
        line += f"; the batch takes the first {taken:,} (--limit)"
    console.print(line, highlight=False)
    if plan.first:
        more = taken - len(plan.first)
        title = f"first {len(plan.first)} of {taken:,}" if more > 0 else None
        console.print(_sessions_table(plan.first, title=title))


def dry_run_table(action: str, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"{action} --dry-run: nothing written")
    for col in ("id", "now", "would become", "or why not"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for row in rows:
        table.add_row(
            str(row["id"]),
            _status(row.get("before")),
            _status(row["after"]) if row.get("after") else "",
            f"[red]{_esc(row['refused'])}[/red]" if row.get("refused") else "",
        )
    out_console().print(table)
    refused = sum(1 for r in rows if r.get("refused"))
    err_console().print(
        f"{len(rows) - refused:,} session(s) would change, {refused:,} would be refused",
        highlight=False,
    )


class BatchProgress:
    """A Rich progress bar on stderr while a batch runs: sessions handled, the last one."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled = enabled
        self.total = total
        self.label = label
        self.steps = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"),
                console=err_console(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total, last="")
        return self

    def update(self, event: dict[str, Any]) -> None:
        if event.get("event") == "step":
            self.steps += 1
        if self._progress is None:
            return
        if event.get("event") == "step":
            last = f"session {event.get('session')}: step {event.get('step')} {event.get('status')}"
            self._progress.update(self._task, last=_esc(last), description=self._label())
            return
        last = f"session {event.get('session')}: {event.get('outcome')}"
        if event.get("status_after"):
            last += f" ({event.get('status_before')} → {event.get('status_after')})"
        self._progress.update(self._task, completed=event.get("handled", 0), last=_esc(last))

    def _label(self) -> str:
        return f"{self.label}, {self.steps} step(s)"

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def report_summary(report: Any) -> None:
    outcomes = ", ".join(f"{n} {o}" for o, n in report.outcomes.items() if n)
    after = ", ".join(f"{n} {_esc(s)}" for s, n in sorted(report.statuses_after.items()))
    line = (
        f"batch {report.id} ({report.action}): {outcomes or 'nothing'} of {report.total:,} "
        f"in {report.elapsed_s:.1f}s; {report.status}"
    )
    if after:
        line += f"; sessions now: {after}"
    err_console().print(line, highlight=False)


def batch_table(batches: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="batches")
    for col in ("id", "action", "state", "handled", "selector", "created", "ended"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for b in batches:
        table.add_row(
            str(b["id"]),
            _esc(b["action"]),
            _esc(b["state"]),
            f"{b['handled']:,}/{b['total']:,}",
            _esc(" ".join(str(b["selector"]).split())[:60]),
            cell_time(b.get("created_at")),
            cell_time(b.get("ended_at")),
        )
    out_console().print(table)


def batch_panel(data: dict[str, Any], shown: int | None) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("action", _esc(data["action"]))
    grid.add_row("selector", _esc(data["selector"]))
    grid.add_row("state", _esc(data["state"]))
    grid.add_row("handled", f"{data['handled']:,} of {data['total']:,}")
    grid.add_row(
        "outcomes", ", ".join(f"{o}: {n:,}" for o, n in data["outcomes"].items() if n) or "-"
    )
    if data.get("statuses_after"):
        grid.add_row(
            "sessions now",
            ", ".join(f"{_esc(s)}: {n:,}" for s, n in sorted(data["statuses_after"].items())),
        )
    args = {k: v for k, v in data["arguments"].items() if v not in (None, {}, "")}
    if args:
        grid.add_row("options", _esc(", ".join(f"{k}={v}" for k, v in args.items())))
    grid.add_row("selected at", cell_time(data["selected_at"]) + " UTC (ago() counts from here)")
    grid.add_row("created", cell_time(data["created_at"]))
    if data.get("ended_at"):
        grid.add_row("ended", cell_time(data["ended_at"]))
    if data.get("owner"):
        grid.add_row("run by", _esc(data["owner"]))
    out_console().print(panel(grid, title=f"batch {data['id']}"))
    items = data["items"]
    if not items:
        return
    table = Table(title="sessions")
    for col in ("#", "session", "outcome", "before", "after", "detail"):
        table.add_column(col, justify="right" if col in ("#", "session") else "left")
    for item in items:
        table.add_row(
            str(item["position"]),
            str(item["session_id"]),
            _esc(item["outcome"]),
            _status(item.get("status_before")) if item.get("status_before") else "",
            _status(item.get("status_after")) if item.get("status_after") else "",
            _esc((item.get("detail") or "")[:80]),
        )
    out_console().print(table)
    if shown is not None and data["total"] > len(items):
        err_console().print(
            f"{data['total'] - len(items):,} more session(s): --items 0 shows all, --json too",
            highlight=False,
        )
