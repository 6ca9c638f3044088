"""One session's debugger: the execution log as it lands, the selected execution in full,
why the next step is next, the dialogue, the steps with their breakpoints, and the
actions (step, run, pause, retry, skip, fork, mark and diff) through the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from flowcli.render.safe_text import clipped as printable
from flowcli.render.safe_text import clipped_line as one_line
from flowcli.tui.views import (
    detail_view,
    explain_view,
    log_label,
    status_text,
    step_row,
    transcript_view,
)
from flowcli.tui.widgets import Bar, when_shown

if TYPE_CHECKING:
    from flowcli.tui.app import FlowcliApp, RunInProgress
    from flowcli.tui.data import SessionHead, SessionUpdate

SKIP_REASON = "skipped in flowcli tui"


class LogTree(Tree[int]):
    """Executions oldest first; each loop repeat is nested under its first pass, and a
    pass folds away with space. Each node's data is its log id."""

    def __init__(self) -> None:
        super().__init__("executions", id="logtree")
        self.show_root = False
        self.guide_depth = 2
        self.nodes: dict[int, TreeNode[int]] = {}
        self.step_orders: dict[int, int | None] = {}
        self.newest: TreeNode[int] | None = None

    def reset_rows(self, rows: list[dict[str, Any]]) -> None:
        self.clear()
        self.nodes = {}
        self.step_orders = {}
        self.newest = None
        self.append_rows(rows, follow=True)

    def append_rows(self, rows: list[dict[str, Any]], *, follow: bool = False) -> None:
        """Add rows; the cursor follows the newest one if it was on the newest before."""
        from flowcli.db.log_queries import step_info

        if not rows:
            return
        # Repeats nest under their first pass, so the newest row is not always the last line.
        following = self.cursor_node is None or self.cursor_node is self.newest
        last: TreeNode[int] | None = None
        for row in rows:
            info = step_info(row.get("step_snapshot"))
            parent = self.nodes.get(row.get("parent_log_id") or -1, self.root)
            if parent is not self.root:
                parent.allow_expand = True
            last = parent.add(log_label(row, info), data=row["id"], expand=True, allow_expand=False)
            self.nodes[row["id"]] = last
            self.step_orders[row["id"]] = info.get("order")
        self.newest = last
        if (follow or following) and last is not None:
            self.call_after_refresh(self.move_cursor, last)

    def selected_log(self) -> int | None:
        node = self.cursor_node
        return node.data if node is not None else None


class SessionScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "step", "Step"),
        Binding("r", "run", "Run"),
        Binding("p", "pause", "Pause"),
        Binding("b", "toggle_break", "Break"),
        Binding("w", "break_when", "Break when…", show=False),
        Binding("x", "clear_breaks", "Clear breakpoints", show=False),
        Binding("t", "retry", "Retry failed step", show=False),
        Binding("k", "skip", "Skip the step", show=False),
        Binding("f", "fork", "Fork"),
        Binding("m", "mark", "Mark for diff", show=False),
        Binding("d", "diff", "Diff marked", show=False),
        Binding("1", "tab('detail')", "Execution pane", show=False),
        Binding("2", "tab('explain')", "Explain pane", show=False),
        Binding("3", "tab('transcript')", "Transcript pane", show=False),
        Binding("4", "tab('steps')", "Steps pane", show=False),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self, session_id: int) -> None:
        super().__init__()
        self.session_id = session_id
        self.head: SessionHead | None = None
        self.settled_order: int | None = None
        self.last_message_id: int | None = None
        self.messages: list[dict[str, Any]] = []
        self.more_messages_before = False
        self.change_key: tuple[Any, ...] | None = None
        self.in_flight: dict[str, Any] | None = None
        self.reading = False
        self.widgets_ready = False
        self.read_error: str | None = None
        self.outcome: Text = Text("")
        # Where the last run stopped at a breakpoint: (step id, executed steps) then.
        self.break_position: tuple[int | None, int] | None = None
        self.detail_log: int | None = None
        self.detail_shown: int | None = None

    @property
    def flowcli(self) -> FlowcliApp:
        return self.app  # type: ignore[return-value]

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Bar(Text(f"session {self.session_id}: loading…"), id="head", classes="bar")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Static("executions", classes="pane-title")
                yield LogTree()
            with TabbedContent(id="right", initial="detail"):
                with TabPane("1 Execution", id="detail"), VerticalScroll():
                    yield Static(Text("select an execution", style="dim"), id="detail-body")
                with TabPane("2 Explain", id="explain"), VerticalScroll():
                    yield Static(Text("…", style="dim"), id="explain-body")
                with (
                    TabPane("3 Transcript", id="transcript"),
                    VerticalScroll(id="transcript-scroll"),
                ):
                    yield Static(Text("…", style="dim"), id="transcript-body")
                with TabPane("4 Steps", id="steps"):
                    table: DataTable[Any] = DataTable(id="steps-table", cursor_type="row")
                    yield table
        yield Bar(Text(""), id="run-status", classes="bar")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"session {self.session_id}"
        table = self.query_one("#steps-table", DataTable)
        for label, width in (
            ("●", 1),
            ("▶", 1),
            ("#", 3),
            ("speaker", 14),
            ("target", 14),
            ("task", 18),
            ("loop", 7),
            ("condition", 30),
        ):
            table.add_column(label, width=width)
        self.query_one(LogTree).focus()
        self.ticker = self.set_interval(self.flowcli.interval, self.reload)
        self.widgets_ready = True  # the widgets the first read fills exist now
        self._show_status()
        self.reload()

    def on_screen_suspend(self) -> None:
        # Under a dialog or another session: stop polling until it is shown again.
        self.ticker.pause()

    def on_screen_resume(self) -> None:
        self.ticker.resume()
        self.reload()

    # --- reading --------------------------------------------------------------------------

    def reload(self) -> None:
        if not self.flowcli.database_ready or self.reading or not self.widgets_ready:
            return
        self.reading = True
        self._load(self.settled_order, self.last_message_id, self.change_key)

    @work(thread=True, group="session-load")
    def _load(
        self, after_order: int | None, after_message: int | None, known: tuple[Any, ...] | None
    ) -> None:
        from flowcli.tui.data import read_session
        from flowcli.tui.failures import describe_failure

        try:
            update = read_session(
                self.flowcli.read_db,
                self.session_id,
                after_order=after_order,
                after_message_id=after_message,
                known_key=known,
                window=self.flowcli.window,
            )
        except Exception as exc:  # noqa: BLE001 - shown, and read again on the next tick
            self.app.call_from_thread(self._read_failed, describe_failure(exc))
            return
        self.app.call_from_thread(self._apply, update)

    @when_shown
    def _read_failed(self, message: str) -> None:
        self.reading = False
        self.read_error = message
        self._show_status()

    @when_shown
    def _apply(self, update: SessionUpdate) -> None:
        self.reading = False
        self.read_error = None
        tree = self.query_one(LogTree)
        if update.reset:
            tree.reset_rows(update.logs)
        else:
            tree.append_rows(update.logs)
        self.settled_order = update.settled_order
        self.in_flight = update.in_flight
        steps_changed = self.head is None or self.head.steps != update.head.steps
        self.head = update.head
        self.change_key = update.head.change_key
        if update.messages_reset:
            self.messages = update.messages
            self.more_messages_before = update.more_messages_before
        else:
            self.messages.extend(update.messages)
            overflow = len(self.messages) - self.flowcli.window
            if overflow > 0:
                del self.messages[:overflow]
                self.more_messages_before = True
        if self.messages:
            self.last_message_id = self.messages[-1]["id"]
        elif self.last_message_id is None:
            self.last_message_id = 0
        if update.messages or update.messages_reset:
            self._show_transcript()
        if update.explain is not None:
            self.query_one("#explain-body", Static).update(explain_view(update.explain))
        if steps_changed or update.explain is not None:
            self._show_steps()
        if update.logs and self.detail_log is None and tree.selected_log() is not None:
            self._load_detail(tree.selected_log())
        self._show_head()
        self._show_status()

    def _show_head(self) -> None:
        head = self.head
        if head is None:
            return
        text = Text(f"session {head.id} · {one_line(head.flow_name or '?', 24)} · ")
        text.append_text(status_text(head.status))
        text.append(f" · round {head.round or '-'} · {head.executed_steps} executed")
        if head.current_order is not None and head.status in ("running", "not_started", "paused"):
            text.append(f" · next: step {head.current_order}")
        if head.status == "not_started":
            text.append(" · next: the first step")
        if self.in_flight is not None:
            text.append(
                f" · #{self.in_flight['execution_order']} in flight "
                f"({one_line(head.lease_owner or 'another process', 40)})",
                style="cyan",
            )
        if head.forked_from is not None:
            source, log = head.forked_from
            text.append(f" · fork of session {source}" + (f" after log {log}" if log else ""))
        if head.error_reason and head.status == "failed":
            text.append(f"\n{printable(head.error_reason, limit=300)}", style="red")
        self.query_one("#head", Bar).show(text)

    def _show_transcript(self) -> None:
        body = self.query_one("#transcript-body", Static)
        body.update(transcript_view(self.messages, earlier=self.more_messages_before))
        scroll = self.query_one("#transcript-scroll", VerticalScroll)
        self.call_after_refresh(scroll.scroll_end, animate=False)

    @when_shown
    def _show_steps(self) -> None:
        head = self.head
        table = self.query_one("#steps-table", DataTable)
        keep = table.cursor_row
        table.clear()
        if head is None:
            return
        breaks = self.flowcli.breakpoints_for(self.session_id)
        for step in head.steps:
            table.add_row(
                *step_row(
                    step,
                    breakpoint=step["order"] in breaks.orders,
                    current=step["order"] == head.next_order
                    and head.status in ("running", "not_started", "paused"),
                ),
                key=str(step["order"]),
            )
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))

    @when_shown
    def _show_status(self) -> None:
        breaks = self.flowcli.breakpoints_for(self.session_id)
        line = Text()
        run = self.flowcli.run_in_progress
        if run is not None and run.session_id == self.session_id:
            line.append(f"▶ {run.what}…", style="cyan bold")
            if run.stop_requested:
                line.append(" stopping after the current step", style="yellow")
        else:
            line.append_text(self.outcome)
        if self.read_error:
            line.append(f"\n{self.read_error} (retrying)", style="red")
        where = []
        if breaks.orders:
            where.append("at step " + ", ".join(str(o) for o in sorted(breaks.orders)))
        if breaks.when:
            where.append(f"when {one_line(breaks.when, 50)}")
        line.append(
            "\nbreakpoints: " + ("; ".join(where) if where else "none (b sets one, w a condition)"),
            style="dim" if not where else "red",
        )
        self.query_one("#run-status", Bar).show(line)

    # --- the selected execution ---------------------------------------------------------------

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[int]) -> None:
        if event.node.data is not None:
            self._load_detail(event.node.data)

    def _load_detail(self, log_id: int | None) -> None:
        if log_id is None:
            return
        self.detail_log = log_id
        self._read_detail(log_id)

    @work(thread=True, exclusive=True, group="detail")
    def _read_detail(self, log_id: int) -> None:
        from flowcli.tui.data import read_log_detail
        from flowcli.tui.failures import describe_failure

        try:
            data = read_log_detail(self.flowcli.read_db, log_id)
        except Exception as exc:  # noqa: BLE001 - shown in the pane
            view: Any = Text(describe_failure(exc), style="red")
        else:
            view = detail_view(data)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_detail, log_id, view)

    @when_shown
    def _show_detail(self, log_id: int, view: Any) -> None:
        if log_id == self.detail_log:
            self.query_one("#detail-body", Static).update(view)
            self.detail_shown = log_id

    def action_tab(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane
        # The keys act on what has focus: b on the steps list marks a step; elsewhere the
        # log keeps it, so n, r and b work on the selected execution.
        if pane == "steps":
            self.query_one("#steps-table", DataTable).focus()
        else:
            self.query_one(LogTree).focus()

    # --- actions through the engine -------------------------------------------------------------

    @when_shown
    def _finish(self, outcome: Text) -> None:
        self.outcome = outcome
        self.reload()
        self._show_status()

    def _failed(self, message: str) -> None:
        self.notify(message, severity="error", timeout=8)
        self._finish(Text(f"✗ {message}", style="red"))

    def _start(self, what: str, action: Any, done: Any) -> None:
        if self.flowcli.start_action(self.session_id, what, action, done, self._failed):
            self._show_status()

    def action_step(self) -> None:
        from flowcli.engine.runner import run_next_step

        app = self.flowcli
        sid = self.session_id
        self._start(
            "running the next step",
            lambda run: run_next_step(app.db, sid, app.options),
            self._step_done,
        )

    def _step_done(self, result: Any) -> None:
        self._finish(step_outcome(result))

    def action_run(self) -> None:
        from flowcli.engine.runner import auto

        app = self.flowcli
        sid = self.session_id
        breaks = app.breakpoints_for(sid)
        head = self.head
        resume = (
            self.break_position is not None
            and head is not None
            and self.break_position == (head.current_step_id, head.executed_steps)
        )

        def run(progress: RunInProgress) -> Any:
            return auto(
                app.db,
                sid,
                app.options,
                should_stop=lambda: progress.stop_requested,
                on_step=lambda result: app.call_from_thread(self.reload),
                breakpoints=breaks or None,
                resume_from_break=resume,
            )

        self._start("running to the end or a breakpoint", run, self._run_done)

    @when_shown
    def _run_done(self, summary: Any) -> None:
        self.break_position = None
        if summary.stop_reason == "breakpoint":
            position = summary.session
            self.break_position = (
                position.get("current_step_id"),
                position.get("executed_steps_count") or 0,
            )
            # Where it stopped and why are the explain pane's subject.
            self.query_one(TabbedContent).active = "explain"
        self._finish(run_outcome(summary))

    def action_pause(self) -> None:
        app = self.flowcli
        run = app.run_in_progress
        if run is not None and run.session_id == self.session_id:
            app.request_stop()
            self._show_status()
            return
        from flowcli.engine.lifecycle import transition

        status = self.head.status if self.head else None
        if status in ("running", "not_started"):
            action = "pause"
        elif status == "paused":
            action = "resume"
        else:
            hint = " (t retries the failed step, k skips it)" if status == "failed" else ""
            self.notify(f"session {self.session_id} is {status}: nothing to pause{hint}")
            return
        sid = self.session_id
        self._start(
            f"{action} session",
            lambda run: transition(app.db, sid, action),
            lambda position: self._finish(
                Text(f"session {sid} is {position['status']}", style="yellow")
            ),
        )

    def action_retry(self) -> None:
        from flowcli.engine.debugging import retry_failed_step

        app = self.flowcli
        sid = self.session_id
        self._start(
            "retrying the failed step",
            lambda run: retry_failed_step(app.db, sid, app.options),
            self._step_done,
        )

    def action_skip(self) -> None:
        from flowcli.engine.debugging import skip_step

        app = self.flowcli
        sid = self.session_id
        self._start(
            "skipping the step",
            lambda run: skip_step(app.db, sid, SKIP_REASON),
            lambda data: self._finish(
                Text(
                    f"↷ skipped step {data['step']['order']} "
                    f"(log {data['log']['id']}): {one_line(data['decision'], 80)}",
                    style="yellow",
                )
            ),
        )

    def action_fork(self) -> None:
        log_id = self.query_one(LogTree).selected_log()
        if log_id is None:
            self.notify("select an execution in the log to fork after it", severity="warning")
            return
        from flowcli.tui.screens.dialogs import ForkScreen

        variables = self.head.variables if self.head else {}
        self.app.push_screen(
            ForkScreen(self.session_id, log_id, variables),
            callback=lambda changes: self._fork(log_id, changes),
        )

    def _fork(self, log_id: int, changes: dict[str, Any] | None) -> None:
        if changes is None:
            return
        from flowcli.engine.debugging import fork_session

        app = self.flowcli
        sid = self.session_id
        self._start(
            f"forking after log {log_id}",
            lambda run: fork_session(app.db, sid, log_id, changes),
            self._forked,
        )

    def _forked(self, data: dict[str, Any]) -> None:
        copied = data["copied"]
        message = (
            f"session {data['id']} forked from session {self.session_id} after execution "
            f"#{data['execution_order']}: {copied['step_execution_logs']} log rows, "
            f"{copied['messages']} messages copied; it is {data['status']}"
        )
        self.notify(message)
        self._finish(Text(message, style="green"))
        self.flowcli.open_session(int(data["id"]))

    def action_mark(self) -> None:
        marked = self.flowcli.toggle_mark(self.session_id)
        self.notify(f"marked for diff: {', '.join(str(s) for s in marked) or 'none'}")

    def action_diff(self) -> None:
        self.flowcli.open_diff()

    # --- breakpoints ----------------------------------------------------------------------------

    def _order_under_cursor(self) -> int | None:
        focused = self.focused
        if isinstance(focused, DataTable) and focused.id == "steps-table":
            if focused.row_count == 0:
                return None
            key = focused.coordinate_to_cell_key(focused.cursor_coordinate).row_key
            return int(key.value) if key.value is not None else None
        tree = self.query_one(LogTree)
        log_id = tree.selected_log()
        if log_id is not None:
            return tree.step_orders.get(log_id)
        return self.head.next_order if self.head else None

    def action_toggle_break(self) -> None:
        order = self._order_under_cursor()
        if order is None:
            self.notify("select an execution or a step to set a breakpoint on", severity="warning")
            return
        app = self.flowcli
        breaks = app.breakpoints_for(self.session_id)
        on = order not in breaks.orders
        app.breakpoints[self.session_id] = breaks.with_order(order, on)
        self.notify(f"breakpoint {'set' if on else 'cleared'} at step {order}")
        self._show_steps()
        self._show_status()

    def action_clear_breaks(self) -> None:
        self.flowcli.breakpoints.pop(self.session_id, None)
        self.notify("breakpoints cleared")
        self._show_steps()
        self._show_status()

    def action_break_when(self) -> None:
        from flowcli.tui.screens.dialogs import BreakWhenScreen

        current = self.flowcli.breakpoints_for(self.session_id)
        self.app.push_screen(BreakWhenScreen(current), callback=self._set_breakpoints)

    def _set_breakpoints(self, breaks: Any) -> None:
        if breaks is None:
            return
        self.flowcli.breakpoints[self.session_id] = breaks
        self._show_status()

    def action_back(self) -> None:
        self.app.pop_screen()


def step_outcome(result: Any) -> Text:
    """One line for what run-next (or retry) did."""
    step = result.step
    what = (
        f"step {step.order} {one_line(step.speaker, 20)} ({one_line(step.task_type, 20)})"
        if step
        else "step"
    )
    log = result.log or {}
    if result.failed:
        suffix = "; the session is failed (t retries, k skips)" if result.session_failed else ""
        return Text(f"✗ {what} failed: {one_line(result.error, 120)}{suffix}", style="red")
    status = log.get("status") or "done"
    style = "yellow" if status == "skipped" else "green"
    return Text(f"✓ {what}: {status} (log {log.get('id')})", style=style)


def run_outcome(summary: Any) -> Text:
    """One line for where a run stopped and why."""
    steps = f"{summary.steps_run} step(s) run"
    reason = summary.stop_reason
    if reason == "breakpoint":
        before = summary.stopped_before or {}
        hit = summary.breakpoint or {}
        return Text(
            f"■ stopped before step {before.get('order')} {one_line(before.get('speaker'), 20)} "
            f"({one_line(before.get('task_type'), 20)}), round {before.get('round')}, "
            f"loop iteration {before.get('loop_iteration')}: {one_line(hit.get('reason'), 120)}"
            f" · {steps} · r continues",
            style="red bold",
        )
    if reason == "interrupted":
        return Text(f"‖ stopped after the current step, as asked · {steps}", style="yellow")
    if reason == "finished":
        return Text(f"✓ finished · {steps} in {summary.elapsed_s:.2f}s", style="green")
    if reason == "failed":
        return Text(f"✗ failed: {one_line(summary.error, 160)} · {steps}", style="red")
    if reason == "paused":
        return Text(f"‖ the session is paused · {steps}", style="yellow")
    return Text(f"stopped: {one_line(reason, 40)} · {steps}")
