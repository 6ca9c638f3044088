"""Rich renderables for the TUI's panes, built from the plain data the engine returns.

Everything shown comes from a database or an LLM reply, so every string goes through
``printable`` (no escape sequence reaches the terminal) and into ``Text`` (no markup is
interpreted). Status is shown by a symbol as well as a colour, so it reads the same
with NO_COLOR.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from flowcli.render.formatting import STATUS_STYLES
from flowcli.render.safe_text import clipped as printable
from flowcli.render.safe_text import clipped_line as one_line

STATUS_ICONS = {
    "completed": "✓",
    "finished": "✓",
    "running": "▶",
    "skipped": "↷",
    "failed": "✗",
    "timeout": "✗",
    "pending": "…",
    "not_started": "○",
    "paused": "‖",
    "cancelled": "⊘",
}
# The transcript pane shows the newest messages, each cut to this much (the execution
# pane shows one in full): what one pane lays out stays bounded however long the dialogue.
TRANSCRIPT_MESSAGES = 200
TRANSCRIPT_MESSAGE_CHARS = 2000


def status_text(status: str | None) -> Text:
    value = status or "not_started"
    icon = STATUS_ICONS.get(value, "?")
    return Text(f"{icon} {printable(value, limit=40)}", style=STATUS_STYLES.get(value, ""))


def age(created: Any, now: datetime) -> str:
    """How long ago, in the largest whole unit: 42s, 5m, 3h, 12d."""
    if not isinstance(created, datetime):
        return ""
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return printable(value or "", limit=40)


def step_label(info: dict[str, Any], width: int = 40) -> str:
    """``3 B → A (answer_question)`` from a step's order/speaker/target/task_type."""
    if not info:
        return "?"
    arrow = f" → {info['target']}" if info.get("target") else ""
    text = f"{info.get('order', '?')} {info.get('speaker') or ''}{arrow} ({info.get('task_type')})"
    return one_line(text, width)


# --- the execution log -------------------------------------------------------------------


def log_label(row: dict[str, Any], info: dict[str, Any]) -> Text:
    """One execution as a tree line: ``#12 ✓ 2 B answer_question r1 ×2``."""
    status = row.get("status") or "pending"
    text = Text()
    text.append(f"#{row.get('execution_order')} ", style="bold")
    text.append(STATUS_ICONS.get(status, "?"), style=STATUS_STYLES.get(status, ""))
    order = info.get("order", "?")
    who = one_line(info.get("speaker") or f"step_id {row.get('step_id')}", 8)
    task = one_line(info.get("task_type") or "", 11)
    text.append(f" {order} {who} {task}")
    text.append(f" r{row.get('round_index') or 1}", style="dim")
    attempt = row.get("attempt_count") or 1
    if attempt > 1:
        text.append(f" ×{attempt}", style="yellow")
    if status != "completed":
        text.append(f" {printable(status, limit=12)}", style=STATUS_STYLES.get(status, ""))
    return text


def _json_text(value: Any) -> Text:
    if value is None:
        return Text("null", style="dim")
    if isinstance(value, dict | list):
        shown = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    else:
        shown = str(value)
    return Text(printable(shown, keep_newlines=True))


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def detail_view(data: dict[str, Any]) -> RenderableType:
    """The selected execution in full, and its context's diff against the one before."""
    grid = _grid()
    step = data.get("step") or {}
    grid.add_row("log", Text(f"{data['id']} · execution #{data['execution_order']}"))
    grid.add_row("step", Text(step_label(step, 60)))
    status = status_text(data.get("status"))
    if data.get("result_type"):
        status.append(f" ({printable(data['result_type'], limit=40)})")
    grid.add_row("status", status)
    grid.add_row(
        "position",
        Text(
            f"round {data.get('round_index')}, loop iteration {data.get('loop_iteration')}, "
            f"attempt {data.get('attempt_count')}"
        ),
    )
    if data.get("condition_evaluation") is not None:
        grid.add_row("condition", Text(str(bool(data["condition_evaluation"]))))
    if data.get("loop_check_result") is not None:
        grid.add_row("loop check", Text(str(bool(data["loop_check_result"]))))
    timing = [
        f"{data['duration_ms']} ms" if data.get("duration_ms") is not None else "",
        f"{data['memory_usage_mb']} MB" if data.get("memory_usage_mb") is not None else "",
    ]
    grid.add_row("cost", Text(", ".join(t for t in timing if t) or "-"))
    grid.add_row("started", Text(when(data.get("started_at") or data.get("created_at"))))
    grid.add_row("completed", Text(when(data.get("completed_at"))))
    if data.get("error_message"):
        grid.add_row("error", Text(printable(data["error_message"], keep_newlines=True), "red"))
    parts: list[RenderableType] = [grid]
    message = data.get("message")
    if message:
        who = printable(message.get("speaker") or "?", limit=50)
        if message.get("target"):
            who += f" → {printable(message['target'], limit=50)}"
        parts.append(Text(f"\nmessage {message['id']}: {who}", style="bold"))
        parts.append(Text(printable(message.get("content"), keep_newlines=True)))
    parts.append(context_diff_view(data.get("context_diff") or {}, data.get("previous_log_id")))
    parts.append(Text("\nresult_data", style="bold"))
    parts.append(_json_text(data.get("result_data")))
    parts.append(Text("\ncontext_snapshot", style="bold"))
    parts.append(_json_text(data.get("context_snapshot")))
    return Group(*parts)


def context_diff_view(diff: dict[str, Any], previous_log_id: int | None) -> RenderableType:
    against = (
        f"log {previous_log_id} (the execution before)"
        if previous_log_id is not None
        else "nothing (the first execution)"
    )
    lines = Text()
    lines.append(f"\ncontext compared with {against}\n", style="bold")
    rows = 0

    def show(value: Any) -> str:
        return one_line(json.dumps(value, ensure_ascii=False, default=str), 60)

    for path, value in (diff.get("added") or {}).items():
        lines.append("+ ", style="green")
        lines.append(f"{one_line(path, 40)} = {show(value)}\n")
        rows += 1
    for path, value in (diff.get("removed") or {}).items():
        lines.append("- ", style="red")
        lines.append(f"{one_line(path, 40)} (was {show(value)})\n")
        rows += 1
    for path, pair in (diff.get("changed") or {}).items():
        old, new = pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, pair)
        lines.append("~ ", style="yellow")
        lines.append(f"{one_line(path, 40)}: {show(old)} → {show(new)}\n")
        rows += 1
    if rows == 0:
        lines.append("unchanged\n", style="dim")
    return lines


# --- why the next step is next --------------------------------------------------------------


def explain_view(data: dict[str, Any]) -> RenderableType:
    if "error" in data:
        return Text(f"cannot explain the next step: {printable(data['error'])}", style="red")
    grid = _grid()
    grid.add_row("status", status_text(data.get("status")))
    step = data.get("step")
    if step is None:
        grid.add_row("next step", Text(f"none: {printable(data.get('blocked_reason'))}"))
    else:
        grid.add_row(
            "next step",
            Text(f"{step_label(step, 60)}, context {one_line(step.get('context_scope'), 30)}"),
        )
        if data.get("will_start"):
            grid.add_row("", Text("the session starts with this step"))
        if not data.get("runnable"):
            grid.add_row("blocked", Text(printable(data.get("blocked_reason")), "red"))
        prev = data.get("previous") or {}
        if prev.get("decision"):
            grid.add_row(
                "why",
                Text(
                    f"execution #{prev['execution_order']} decided: "
                    f"{printable(prev['decision'], limit=500)}"
                ),
            )
        elif data.get("will_start"):
            grid.add_row("why", Text("it is the first step of the flow"))
        cond = data.get("condition")
        if cond:
            value = cond["value"] if cond.get("error") is None else f"error: {cond['error']}"
            grid.add_row(
                "condition",
                Text(f"{one_line(cond['expr'], 60)} → {one_line(value, 60)} ({cond['effect']})"),
            )
        else:
            grid.add_row("condition", Text("none (always runs)"))
        grid.add_row("round", Text(f"{data.get('round')} of {data.get('max_rounds')}"))
        grid.add_row(
            "loop iteration", Text(f"{data.get('loop_iteration')} (attempt {data.get('attempt')})")
        )
        for loop in data.get("loops", []):
            line = (
                f"step {loop['loop_step_order']} → back to {loop['back_to_order']}: "
                f"{loop['jumps_made']} of {loop['max_loops']} jumps made, "
                f"{loop['jumps_left']} left"
            )
            if loop.get("if_run"):
                line += f"; if run now: {loop['if_run']}"
            grid.add_row("loop", Text(line))
        grid.add_row(
            "termination",
            Text(
                f"{data.get('executed_steps')} of {data.get('max_steps')} max steps; "
                f"{data.get('steps_left_in_round', '?')} step(s) left in this round, "
                f"{data.get('rounds_left', '?')} round(s) after it"
            ),
        )
        if data.get("end_condition"):
            grid.add_row("ends when", Text(one_line(data["end_condition"], 80)))
    for warning in data.get("warnings", []):
        grid.add_row("warning", Text(printable(warning, limit=300), "yellow"))
    return grid


# --- the dialogue -------------------------------------------------------------------------


def transcript_view(messages: Iterable[dict[str, Any]], *, earlier: bool = False) -> Text:
    """The dialogue, a heading per round; ``earlier`` says older messages are not shown."""
    shown = list(messages)
    if len(shown) > TRANSCRIPT_MESSAGES:
        shown, earlier = shown[-TRANSCRIPT_MESSAGES:], True
    out = Text()
    if earlier:
        out.append("(earlier messages are not shown)\n\n", style="dim")
    current_round: Any = object()
    count = 0
    for msg in shown:
        count += 1
        if msg.get("round") != current_round:
            current_round = msg.get("round")
            out.append(f"── round {current_round} ──\n", style="bold")
        who = one_line(msg.get("speaker") or "?", 20)
        if msg.get("target"):
            who += f" → {one_line(msg['target'], 20)}"
        section = f" · {one_line(msg['section'], 24)}" if msg.get("section") else ""
        out.append(f"{who}{section}", style="bold cyan")
        out.append(f"  #{msg.get('id')}\n", style="dim")
        content = printable(msg.get("content"), keep_newlines=True, limit=TRANSCRIPT_MESSAGE_CHARS)
        out.append(content.rstrip() + "\n\n")
    if count == 0:
        out.append("no messages yet", style="dim")
    return out


# --- the flow's steps, with breakpoints --------------------------------------------------------


def step_row(step: dict[str, Any], *, breakpoint: bool, current: bool) -> list[Text]:
    loop = step.get("loop")
    return [
        Text("●" if breakpoint else " ", style="red bold"),
        Text("▶" if current else " ", style="cyan bold"),
        Text(str(step["order"])),
        Text(one_line(step.get("speaker"), 14)),
        Text(one_line(step.get("target") or "", 14)),
        Text(one_line(step.get("task_type"), 18)),
        Text(f"→{loop['to_order']} ×{loop['max_loops']}" if loop else ""),
        Text(one_line(step.get("condition") or "", 30)),
    ]


# --- two sessions side by side -----------------------------------------------------------------

DIFF_MARKERS = {"same": "=", "different": "≠", "only_a": "A only", "only_b": "B only"}
DIFF_STYLES = {"same": "green", "different": "red", "only_a": "yellow", "only_b": "yellow"}


def diff_cells(row: dict[str, Any], message_width: int) -> list[Text]:
    marker = row["marker"]
    cells = [
        Text(DIFF_MARKERS[marker], style=DIFF_STYLES[marker]),
        Text(str(row["round"])),
        Text(str(row["step_order"]) if row["step_order"] is not None else "?"),
        Text(str(row["loop_iteration"])),
    ]
    changed = set(row.get("differences") or [])
    for side in ("a", "b"):
        entry = row.get(side)
        if entry is None:
            cells.extend([Text(""), Text(""), Text("")])
            continue
        mark = "bold red"
        cells.append(Text(str(entry["execution_order"])))
        cells.append(
            Text(
                one_line(entry["status"], 10),
                style=mark if "status" in changed or "result_type" in changed else "",
            )
        )
        cells.append(
            Text(
                one_line(entry.get("content") or "", message_width),
                style=mark if "content" in changed else "",
            )
        )
    return cells


def diff_side_view(label: str, entry: dict[str, Any] | None, order: int | None) -> Text:
    out = Text(f"{label}\n", style="bold")
    if entry is None:
        out.append("no execution at this position", style="dim")
        return out
    info = {"order": order if order is not None else "?", **entry}
    out.append(
        f"#{entry['execution_order']} {step_label(info, 40)}: "
        f"{printable(entry['status'], limit=20)}"
        f" ({printable(entry.get('result_type') or '', limit=30)})\n"
    )
    out.append(printable(entry.get("content") or "", keep_newlines=True))
    return out
