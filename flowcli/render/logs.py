"""Terminal views of step logs and debugging results: trees, followed rows, one log in
detail, statistics, the timeline, transcripts, session diffs, skips and forks.

Builders take the plain data that flowcli.db.log_queries and flowcli.engine.debugging
return; results go to stdout, notes to stderr.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from flowcli.render.formatting import (
    STATUS_STYLES,
    cell_time,
    escaped,
    milliseconds,
    panel,
    plural,
    styled_status,
    timed,
    zoned_time,
)
from flowcli.render.json_output import json_default
from flowcli.render.output import layout_width, out_console
from flowcli.render.safe_text import visible
from flowcli.render.tables import Col, show_table


def _step_label(row: dict[str, Any]) -> str:
    from flowcli.db.log_rows import step_info

    info = step_info(row.get("step_snapshot"))
    if not info:
        return f"step_id {row.get('step_id')}"
    parts = (info.get("order", "?"), info.get("speaker") or "", info.get("task_type") or "")
    return " ".join(str(p) for p in parts).strip()


def _cut(text: Any, width: int) -> str:
    value = "" if text is None else " ".join(str(text).split())
    return value if len(value) <= width else value[: max(0, width - 1)] + "…"


# --- the tree of repeats -------------------------------------------------------------


def logs_tree(rows: Iterable[dict[str, Any]], title: str) -> int:
    """Executions as a tree: each loop repeat nested under its first pass."""
    from rich.tree import Tree

    tree = Tree(escaped(title))
    nodes: dict[int, Any] = {}
    count = 0
    for row in rows:
        label = (
            f"#{row['execution_order']} {escaped(_step_label(row))}  "
            f"round {escaped(row.get('round_index'))}, loop {escaped(row.get('loop_iteration'))}, "
            f"try {escaped(row.get('attempt_count'))}  {styled_status(row.get('status'))}"
        )
        if row.get("result_type"):
            label += f" ({escaped(row['result_type'])})"
        if row.get("duration_ms") is not None:
            label += f"  {row['duration_ms']} ms"
        if row.get("error_message"):
            label += f"  [red]{escaped(_cut(row['error_message'], 60))}[/red]"
        parent = nodes.get(row.get("parent_log_id") or -1, tree)
        nodes[row["id"]] = parent.add(label)
        count += 1
    out_console().print(tree)
    return count


# --- rows printed as they arrive (logs --follow) ---------------------------------------

_FOLLOW_COLUMNS = (
    # name, width, align, priority (0: always; larger numbers leave first when narrow)
    ("#", 6, ">", 0),
    ("round", 5, ">", 3),
    ("loop", 4, ">", 4),
    ("try", 3, ">", 5),
    ("step", 30, "<", 0),
    ("status", 9, "<", 0),
    ("result", 16, "<", 2),
    ("duration", 10, ">", 3),
    ("started", 19, "<", 1),
)


class FollowedRows:
    """One line per execution in fixed-width columns, so rows printed later line up
    with the header printed first. The columns are chosen once, to fit the terminal;
    into a pipe the rows are tab-separated, under a header line."""

    def __init__(self, error_width: int = 40) -> None:
        self.error_width = error_width
        self.count = 0
        console = out_console()
        self.pipe = not console.is_terminal
        columns = list(_FOLLOW_COLUMNS)
        width = console.width
        while not self.pipe and sum(c[1] + 2 for c in columns) + 12 > width:
            droppable = [c for c in columns if c[3] > 0]
            if not droppable:
                break
            columns.remove(max(droppable, key=lambda c: (c[3], columns.index(c))))
        self.columns = columns
        if not self.pipe:
            used = sum(c[1] + 2 for c in columns)
            self.error_width = max(10, min(error_width, width - used - 1))

    def header(self) -> None:
        if self.pipe:
            names = [name for name, *_ in self.columns] + ["error"]
            out_console().print("\t".join(names), markup=False, soft_wrap=True)
            return
        cells = [
            f"{timed(name) if name == 'started' else name:{align}{width}}"
            for name, width, align, _ in self.columns
        ]
        out_console().print(
            "[bold]" + escaped("  ".join(cells) + "  error") + "[/bold]", soft_wrap=True
        )

    def row(self, row: dict[str, Any]) -> None:
        values = {
            "#": str(row["execution_order"]),
            "round": row.get("round_index"),
            "loop": row.get("loop_iteration"),
            "try": row.get("attempt_count"),
            "step": _step_label(row),
            "status": row.get("status") or "-",
            "result": row.get("result_type") or "",
            "duration": milliseconds(row.get("duration_ms")),
            "started": cell_time(row.get("started_at") or row.get("created_at")),
        }
        if self.pipe:
            from flowcli.render.safe_text import one_line

            cells = [one_line(values[name]) for name, *_ in self.columns]
            cells.append(one_line(row.get("error_message") or ""))
            out_console().print("\t".join(cells), markup=False, soft_wrap=True)
            self.count += 1
            return
        parts = []
        for name, width, align, _ in self.columns:
            value = values[name]
            text = f"{_cut(value, width):{align}{width}}"
            parts.append(_status_cell(text, value) if name == "status" else escaped(text))
        error = _cut(row.get("error_message"), self.error_width)
        line = "  ".join(parts) + ("  [red]" + escaped(error) + "[/red]" if error else "")
        out_console().print(line, soft_wrap=True)
        self.count += 1


def _status_cell(padded: str, status: Any) -> str:

    style = STATUS_STYLES.get(str(status), "")
    return f"[{style}]{escaped(padded)}[/{style}]" if style else escaped(padded)


def follow_jsonl(row: dict[str, Any]) -> None:
    """One log row as a JSON line, flushed at once so a reader sees it now."""
    from flowcli.db.log_rows import LOG_COLUMNS

    plain = {c: row.get(c) for c in LOG_COLUMNS}
    sys.stdout.write(json.dumps(plain, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# --- one log in detail -----------------------------------------------------------------

_DETAIL_JSON_KEYS = ("result_data", "step_snapshot", "context_snapshot")


def _json_view(value: Any) -> Any:
    from rich.json import JSON
    from rich.text import Text

    if isinstance(value, dict | list):
        # ensure_ascii escapes every control and bidi character as \\uXXXX: shown, not obeyed.
        return JSON(
            json.dumps(value, default=json_default), indent=2, ensure_ascii=True, highlight=False
        )
    return Text(visible(value))


def log_detail_view(data: dict[str, Any]) -> None:
    """Every column of a log, its JSON columns highlighted, and its context's diff."""
    from rich.table import Table

    from flowcli.db.log_rows import LOG_COLUMNS

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    step = data.get("step") or {}
    for col in LOG_COLUMNS:
        if col in _DETAIL_JSON_KEYS:
            continue
        value = data.get(col)
        if col == "status":
            shown = styled_status(value)
        elif isinstance(value, datetime):
            shown = zoned_time(value)
        elif col == "error_message" and value:
            shown = f"[red]{escaped(value)}[/red]"
        else:
            shown = escaped("" if value is None else value)
        grid.add_row(col, shown)
    if step:
        arrow = f" → {step['target']}" if step.get("target") else ""
        grid.add_row(
            "step",
            f"{escaped(step.get('order'))}. {escaped(step.get('speaker'))}{escaped(arrow)} "
            f"({escaped(step.get('task_type'))})",
        )
    console = out_console()
    console.print(
        panel(
            grid,
            title=f"log {data['id']}: session {data['session_id']}, "
            f"execution #{data['execution_order']}",
        )
    )
    message = data.get("message")
    if message:
        who = escaped(message.get("speaker") or "?")
        if message.get("target"):
            who += f" → {escaped(message['target'])}"
        console.print(
            panel(escaped(message.get("content")), title=f"message {message['id']}: {who}")
        )
    for key in _DETAIL_JSON_KEYS:
        console.print(panel(_json_view(data.get(key)), title=key))
    context_diff_table(data.get("context_diff") or {}, data.get("previous_log_id"))


def context_diff_table(diff: dict[str, Any], previous_log_id: int | None) -> None:
    against = (
        f"log {previous_log_id} (the previous execution)"
        if previous_log_id is not None
        else "nothing (first execution)"
    )
    columns = [
        Col(""),
        Col("path", flex=True, min_width=12, max_width=40),
        Col("before", flex=True, min_width=12, max_width=80),
        Col("after", flex=True, min_width=12, max_width=80),
    ]

    def show(value: Any) -> str:
        return escaped(json.dumps(value, default=json_default, ensure_ascii=False))

    rows = []
    for path, value in (diff.get("added") or {}).items():
        rows.append(["[green]+[/green]", escaped(path), "", show(value)])
    for path, value in (diff.get("removed") or {}).items():
        rows.append(["[red]-[/red]", escaped(path), show(value), ""])
    for path, (old, new) in (diff.get("changed") or {}).items():
        rows.append(["[yellow]~[/yellow]", escaped(path), show(old), show(new)])
    if not rows:
        out_console().print(f"context unchanged from {escaped(against)}")
    else:
        show_table(columns, rows, title=f"context compared with {against}")


# --- statistics and timeline -------------------------------------------------------------


def stats_table(data: dict[str, Any]) -> None:
    columns = [
        Col("step", "right"),
        Col("speaker", flex=True, min_width=10, max_width=30),
        Col("task", priority=3),
        Col("runs", "right"),
        Col("skips", "right", priority=2),
        Col("failures", "right"),
        Col("p50", "right", priority=1),
        Col("p95", "right", priority=2),
        Col("max", "right", priority=1),
    ]
    rows = [
        [
            escaped(s["order"] if s["order"] is not None else f"id {s['step_id']}"),
            escaped(s["speaker"]),
            escaped(s["task_type"]),
            str(s["runs"]),
            str(s["skips"]),
            f"[red]{s['failures']}[/red]" if s["failures"] else "0",
            milliseconds(s["p50_ms"]),
            milliseconds(s["p95_ms"]),
            milliseconds(s["max_ms"]),
        ]
        for s in data["steps"]
    ]
    total = data["total"]
    caption = (
        f"{plural(total['executions'], 'execution')}: {plural(total['runs'], 'run')}, "
        f"{plural(total['skips'], 'skip')}, {plural(total['failures'], 'failure')}; "
        "durations are of completed runs"
    )
    # memory_usage_mb is the process's resident memory when the row was written (MRC's
    # column), not the step's: one figure for the session says that honestly.
    peaks = [s["max_memory_mb"] for s in data["steps"] if s.get("max_memory_mb") is not None]
    if peaks:
        caption += f"; the running process peaked at {max(peaks):.1f} MB"
    show_table(
        columns,
        rows,
        title=f"session {data['session_id']}: steps",
        caption=caption,
        empty="no executions yet",
    )


def timeline_view(data: dict[str, Any]) -> None:
    """A Gantt-style bar per execution, placed within the span of the executions shown."""
    console = out_console()
    rows = data["rows"]
    if not rows:
        console.print(f"session {data['session_id']} has no executions to show")
        return
    label_width = 36
    suffix_width = 14
    bar_width = max(10, layout_width() - label_width - suffix_width - 2)
    console.print(
        f"session {data['session_id']}: {plural(len(rows), 'execution')} over "
        f"{data['span_ms']:.0f} ms from {zoned_time(data['span_start'])}",
        soft_wrap=True,
    )
    marks = {"completed": ("█", "green"), "skipped": ("░", "yellow")}
    for r in rows:
        loop = f" L{r['loop_iteration']}" if r.get("loop_iteration") else ""
        label = _cut(
            f"#{r['execution_order']} r{r['round_index']}{loop} "
            f"{r['order'] if r['order'] is not None else '?'}.{visible(r['speaker'] or '')} "
            f"{visible(r['task_type'] or '')}",
            label_width,
        )
        failed = r["status"] in ("failed", "timeout")
        char, style = marks.get(r["status"], ("█", "red" if failed else "cyan"))
        if r.get("offset") is None:
            bar = ""
            start = 0
        else:
            start = min(bar_width - 1, int(r["offset"] * bar_width))
            length = max(1, round(r["length"] * bar_width))
            bar = char * min(length, bar_width - start)
        suffix = milliseconds(r.get("duration_ms"))
        line = f"{escaped(f'{label:<{label_width}}')} {' ' * start}[{style}]{bar}[/{style}]"
        if failed:
            line += " [bold red]✗[/bold red]"
        line += f" {escaped(suffix)}"
        console.print(line, soft_wrap=True)
    console.print("[dim]█ completed  ░ skipped  ✗ failed[/dim]")


# --- transcript --------------------------------------------------------------------------

_MARKDOWN = re.compile(
    r"^\s{0,3}#{1,6}\s+\S"  # heading
    r"|^\s{0,3}(```|~~~)"  # code fence
    r"|^\s*([-*+]|\d+[.)])\s+\S"  # list item
    r"|^\s{0,3}>\s"  # block quote
    r"|\*\*[^*\n]+\*\*|__[^_\n]+__"  # strong
    r"|(?<![*\w])\*[^*\s][^*\n]*\*(?![*\w])"  # emphasis
    r"|(?<![_\w])_[^_\s][^_\n]*_(?![_\w])"
    r"|\[[^\]\n]+\]\([^)\s]+\)"  # link
    r"|`[^`\n]+`",  # inline code
    re.MULTILINE,
)


def looks_like_markdown(text: str) -> bool:
    return bool(_MARKDOWN.search(text or ""))


def transcript_view(session_id: int, messages: list[dict[str, Any]]) -> None:
    """The dialogue: a heading per round, a panel per message (Markdown when it is)."""
    from rich.markdown import Markdown
    from rich.rule import Rule
    from rich.text import Text

    console = out_console()
    if not messages:
        console.print(f"session {session_id} has no messages yet")
        return
    current: Any = object()
    for msg in messages:
        if msg["round"] != current:
            current = msg["round"]
            if console.is_terminal:
                console.print(Rule(f"round {escaped(current)}"))
            else:
                console.print(f"── round {escaped(current)} ──")
        title = f"[bold]{escaped(msg['speaker'] or '?')}[/bold]"
        if msg.get("target"):
            title += f" → {escaped(msg['target'])}"
        if msg.get("section"):
            title += f" · {escaped(msg['section'])}"
        content = visible(msg["content"] or "")
        body: Any = Markdown(content) if looks_like_markdown(content) else Text(content)
        console.print(
            panel(
                body,
                title=title,
                title_align="left",
                subtitle=f"message {msg['id']}, {zoned_time(msg.get('created_at'))}",
                subtitle_align="right",
            )
        )


# --- diff, skip, fork ----------------------------------------------------------------------

DIFF_MARKERS = {"same": "=", "different": "≠", "only_a": "only A", "only_b": "only B"}


def diff_table(data: dict[str, Any]) -> None:
    columns = [
        Col(""),
        Col("round", "right", priority=2),
        Col("step", "right"),
        Col("loop", "right", priority=3),
    ]
    for side in ("A", "B"):
        columns += [
            Col(f"{side} #", "right", priority=4),
            Col(f"{side} status"),
            Col(f"{side} result", priority=1),
            Col(f"{side} message", flex=True, min_width=12, max_width=50, priority=5),
        ]
    styles = {"same": "green", "different": "red", "only_a": "yellow", "only_b": "yellow"}
    rows = []
    for row in data["rows"]:
        cells = [
            f"[{styles[row['marker']]}]{escaped(DIFF_MARKERS[row['marker']])}[/]",
            str(row["round"]),
            escaped(row["step_order"] if row["step_order"] is not None else "?"),
            str(row["loop_iteration"]),
        ]
        for side in ("a", "b"):
            entry = row[side]
            if entry is None:
                cells.extend(["", "", "", ""])
                continue
            diff = row["differences"]

            def mark(field: str, text: str, diff: list[str] = diff) -> str:
                return f"[bold red]{text}[/bold red]" if field in diff else text

            cells.extend(
                [
                    str(entry["execution_order"]),
                    mark("status", escaped(entry["status"])),
                    mark("result_type", escaped(entry["result_type"] or "")),
                    mark("content", escaped(" ".join(str(entry["content"] or "").split()))),
                ]
            )
        rows.append(cells)
    s = data["summary"]
    caption = (
        f"= {s['same']} same, ≠ {s['different']} different, "
        f"{s['only_a']} only in A, {s['only_b']} only in B"
    )
    show_table(
        columns,
        rows,
        title=f"session {data['a']} (A) vs session {data['b']} (B)",
        caption=caption,
        empty="neither session has executions",
    )


def skip_panel(data: dict[str, Any]) -> None:
    from rich.table import Table

    log = data["log"]
    step = data["step"]
    session = data["session"]
    result = json.loads(log["result_data"]) if log.get("result_data") else {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    arrow = f" → {step['target']}" if step.get("target") else ""
    grid.add_row(
        "step",
        f"{step['order']}. {escaped(step['speaker'])}{escaped(arrow)} "
        f"({escaped(step['task_type'])})",
    )
    grid.add_row(
        "execution",
        f"#{log['execution_order']} (log {log['id']}) round {log['round_index']}, "
        f"loop iteration {log['loop_iteration']}, attempt {log['attempt_count']}",
    )
    grid.add_row("status", f"{styled_status(log['status'])} ({escaped(log['result_type'])})")
    if result.get("reason"):
        grid.add_row("reason", escaped(result["reason"]))
    grid.add_row("next", escaped(data["decision"]))
    grid.add_row(
        "session",
        f"{styled_status(session['status'])} (was {escaped(data['previous_status'])}), "
        f"round {session['current_round']}, "
        f"{plural(session['executed_steps_count'] or 0, 'step')} executed",
    )
    out_console().print(
        panel(grid, title=f"session {session['id']}: step skipped", border_style="yellow")
    )


__all__ = [
    "FollowedRows",
    "context_diff_table",
    "diff_table",
    "follow_jsonl",
    "log_detail_view",
    "logs_tree",
    "looks_like_markdown",
    "skip_panel",
    "stats_table",
    "timeline_view",
    "transcript_view",
]
