"""Running steps: what one ``run-next`` did, what ``explain`` says runs next, and the
progress and summary of ``auto``.
"""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import escaped, panel, plural, styled_status
from flowcli.render.messages import err_console
from flowcli.render.output import out_console


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
            "step",
            f"{step.order}. {escaped(step.speaker)}{escaped(arrow)} ({escaped(step.task_type)})",
        )
    if log:
        grid.add_row(
            "execution",
            f"#{log['execution_order']} round {log['round_index']}, "
            f"loop iteration {log['loop_iteration']}, attempt {log['attempt_count']}",
        )
        grid.add_row("status", f"{styled_status(log['status'])} ({escaped(log['result_type'])})")
    if result.condition:
        grid.add_row("condition", f"{escaped(result.condition)} → {result.condition_value}")
    decision = result.decision
    if decision is not None and decision.loop_result:
        grid.add_row(
            "loop", f"{decision.loop_result} (loop_check_result={decision.loop_check_result})"
        )
    message = payload.get("message")
    if message:
        grid.add_row("message", escaped(message["content"]))
    if result.error:
        grid.add_row("error", f"[red]{escaped(result.error)}[/red]")
    if log.get("duration_ms") is not None:
        grid.add_row("duration", f"{log['duration_ms']} ms")
    if decision is not None:
        grid.add_row("next", escaped(decision.reason))
    grid.add_row(
        "session",
        f"{styled_status(session['status'])}, round {session['current_round']}, "
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
    grid.add_row("status", styled_status(data["status"]))
    step = data.get("step")
    if step is None:
        grid.add_row("next step", f"none: {escaped(data.get('blocked_reason'))}")
    else:
        arrow = f" → {step['target']}" if step.get("target") else ""
        grid.add_row(
            "next step",
            f"{step['order']}. {escaped(step['speaker'])}{escaped(arrow)} "
            f"({escaped(step['task_type'])}), context: {escaped(step['context_scope'])}",
        )
        if data.get("will_start"):
            grid.add_row("", "the session starts with this step")
        if not data.get("runnable"):
            grid.add_row("blocked", f"[red]{escaped(data.get('blocked_reason'))}[/red]")
        prev = data.get("previous")
        if prev and prev.get("decision"):
            grid.add_row(
                "why", f"execution #{prev['execution_order']} decided: {escaped(prev['decision'])}"
            )
        elif data.get("will_start"):
            grid.add_row("why", "it is the first step of the flow")
        cond = data.get("condition")
        if cond:
            value = cond["value"] if cond["error"] is None else f"error: {cond['error']}"
            grid.add_row(
                "condition", f"{escaped(cond['expr'])} → {escaped(value)} ({cond['effect']})"
            )
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
            grid.add_row("loop", escaped(line))
        if data.get("engine_state") == "rebuilt from the log":
            grid.add_row("counters", "rebuilt from the log (the cached state was absent or stale)")
        grid.add_row(
            "termination",
            f"{data['executed_steps']} of {data['max_steps']} max steps; "
            f"{_count(data.get('steps_left_in_round'), 'step')} left in this round, "
            f"{_count(data.get('rounds_left'), 'round')} after it",
        )
        if data.get("end_condition"):
            grid.add_row("ends when", escaped(data["end_condition"]))
    for w in data.get("warnings", []):
        grid.add_row("warning", f"[yellow]{escaped(w)}[/yellow]")
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
        desc = (
            f"step {step.order} {escaped(step.speaker)} ({escaped(step.task_type)})"
            if step
            else "…"
        )
        round_ = (result.log or {}).get("round_index")
        if round_ is not None:
            desc += f", round {round_}"
        if result.failed:
            desc += f" [red]attempt failed: {escaped(str(result.error)[:60])}[/red]"
        self._progress.update(self._task, description=desc, completed=self.steps)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def auto_summary(summary: Any) -> None:
    status = summary.final_status
    line = (
        f"session {summary.session_id}: {plural(summary.steps_run, 'step')} run in "
        f"{summary.elapsed_s:.2f}s; status {styled_status(status)}; "
        f"stopped: {escaped(summary.stop_reason)}"
    )
    if summary.failed_attempts:
        line += f"; {plural(summary.failed_attempts, 'failed attempt')}"
    before = getattr(summary, "stopped_before", None)
    if before:
        line += (
            f"; before step {escaped(before['order'])} {escaped(before['speaker'])} "
            f"({escaped(before['task_type'])}), round {before['round']}, "
            f"loop iteration {before['loop_iteration']}"
        )
    hit = getattr(summary, "breakpoint", None)
    if hit:
        line += f": {escaped(hit['reason'])}"
    err_console().print(line)
