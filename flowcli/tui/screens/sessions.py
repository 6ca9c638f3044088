"""The sessions list: status, flow, age and steps, filtered, refreshed live, marked for diff."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Header

from flowcli.render.safe_text import clipped_line as one_line
from flowcli.tui.views import age, status_text
from flowcli.tui.widgets import Bar, gone, when_shown

if TYPE_CHECKING:
    from textual.widgets import DataTable

    from flowcli.tui.app import FlowcliApp
    from flowcli.tui.data import SessionsData

# `s` cycles through these; None is every status.
STATUS_FILTERS: tuple[str | None, ...] = (
    None,
    "running",
    "paused",
    "failed",
    "finished",
    "not_started",
    "cancelled",
)


class SessionsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", show=False),
        Binding("s", "cycle_status", "Status filter"),
        Binding("f", "cycle_flow", "Flow filter"),
        Binding("m", "mark", "Mark"),
        Binding("d", "diff", "Diff marked"),
        Binding("q", "app.quit_app", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.status_filter: str | None = None
        self.flow_filter: int | None = None
        self.flows: list[dict[str, Any]] = []
        self.shown: list[tuple[Any, ...]] = []
        self.reading = False
        self.widgets_ready = False
        self.error: str | None = None
        self.loaded_once = False

    @property
    def flowcli(self) -> FlowcliApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        # The first frame is the title, the filters and "loading…": what can be drawn
        # before the database is read. The table and the keys footer are built right
        # after it (build_table, called by the app once it is ready), so Textual's
        # heaviest widgets do not delay it.
        yield Header()
        yield Bar(self._filter_line(), id="filters", classes="bar")
        yield Bar("loading…", id="sessions-status", classes="bar")

    def on_mount(self) -> None:
        self.sub_title = "sessions"
        self.ticker = self.set_interval(self.flowcli.interval, self.reload)

    async def build_table(self) -> None:
        """The sessions table and the footer, once the first frame is on the screen."""
        from textual.widgets import DataTable, Footer

        if gone(self):
            return  # the app is already closing (a failed start-up check)
        table: DataTable[Any] = DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        width = self.app.size.width
        topic = max(10, width - 62)
        for label, key, size in (
            (" ", "mark", 1),
            ("id", "id", 6),
            ("status", "status", 13),
            ("flow", "flow", 16),
            ("age", "age", 5),
            ("steps", "steps", 6),
            ("topic", "topic", topic),
        ):
            table.add_column(label, key=key, width=size)
        await self.mount(table, before="#sessions-status")
        if gone(self):
            return
        await self.mount(Footer())
        table.focus()
        self.widgets_ready = True  # the widgets the first read fills exist now
        self.reload()

    def on_screen_suspend(self) -> None:
        # Nobody sees this list while a session is open over it: stop polling.
        self.ticker.pause()

    # --- reading --------------------------------------------------------------------------

    def reload(self) -> None:
        if not self.flowcli.database_ready or self.reading or not self.widgets_ready:
            return
        self.reading = True
        self._load(self.status_filter, self.flow_filter)

    @work(thread=True, group="sessions-load")
    def _load(self, status: str | None, flow_id: int | None) -> None:
        from flowcli.tui.data import read_sessions
        from flowcli.tui.failures import describe_failure

        try:
            data = read_sessions(
                self.flowcli.read_db, statuses=[status] if status else None, flow_id=flow_id
            )
        except Exception as exc:  # noqa: BLE001 - shown, and read again on the next tick
            self.app.call_from_thread(self._failed, describe_failure(exc))
            return
        self.app.call_from_thread(self._show, data, (status, flow_id))

    @when_shown
    def _failed(self, message: str) -> None:
        self.reading = False
        self.error = message
        status = self.query_one("#sessions-status", Bar)
        status.show(Text(f"{message} (retrying)", style="red"))

    @when_shown
    def _show(self, data: SessionsData, filters: tuple[str | None, int | None]) -> None:
        self.reading = False
        if filters != (self.status_filter, self.flow_filter):
            self.reload()  # the filter changed while this was read
            return
        self.error = None
        if not self.loaded_once:
            self.call_after_refresh(self.flowcli.preload_session_modules)
        self.loaded_once = True
        self.flows = data.flows
        now = self.flowcli.now()
        marked = self.flowcli.marked
        rows = [
            (
                s["id"],
                s["status"],
                s.get("flow_name") or f"flow {s['flow_template_id']}",
                age(s.get("created_at"), now),
                s.get("executed_steps_count") or 0,
                s.get("topic"),
                s["id"] in marked,
            )
            for s in data.sessions
        ]
        if rows != self.shown:
            self._fill(rows)
        self.query_one("#filters", Bar).show(self._filter_line())
        count = len(rows)
        self.query_one("#sessions-status", Bar).show(
            Text(f"{count} session(s), newest first · enter opens · m marks two, d diffs · ? keys")
        )

    def _fill(self, rows: list[tuple[Any, ...]]) -> None:
        table = self.table()
        keep = self.selected_session()
        table.clear()
        for sid, status, flow, how_old, steps, topic, marked in rows:
            table.add_row(
                Text("*" if marked else " ", style="bold yellow"),
                Text(str(sid)),
                status_text(status),
                Text(one_line(flow, 16)),
                Text(how_old),
                Text(str(steps)),
                Text(one_line(topic, 200)),
                key=str(sid),
            )
        self.shown = rows
        if keep is not None and str(keep) in table.rows:
            table.move_cursor(row=table.get_row_index(str(keep)))

    def _filter_line(self) -> Text:
        flow = "all"
        if self.flow_filter is not None:
            name = next((f["name"] for f in self.flows if f["id"] == self.flow_filter), None)
            flow = f"{self.flow_filter} {one_line(name or '', 30)}".strip()
        marked = ", ".join(str(s) for s in self.flowcli.marked) or "none"
        return Text(
            f"status: {self.status_filter or 'all'} (s) · flow: {flow} (f) · marked: {marked}"
        )

    # --- actions ---------------------------------------------------------------------------

    def table(self) -> DataTable[Any]:
        from textual.widgets import DataTable

        return self.query_one("#sessions", DataTable)

    def selected_session(self) -> int | None:
        if not self.widgets_ready:
            return None  # the table is built right after the first frame
        table = self.table()
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - no row under the cursor
            return None
        return int(key.value) if key.value is not None else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.flowcli.open_session(int(event.row_key.value))

    def action_open(self) -> None:
        sid = self.selected_session()
        if sid is not None:
            self.flowcli.open_session(sid)

    def action_cycle_status(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self._refilter()

    def action_cycle_flow(self) -> None:
        ids: list[int | None] = [None, *[f["id"] for f in self.flows]]
        index = ids.index(self.flow_filter) if self.flow_filter in ids else 0
        self.flow_filter = ids[(index + 1) % len(ids)]
        self._refilter()

    def _refilter(self) -> None:
        self.query_one("#filters", Bar).show(self._filter_line())
        self.shown = []
        self.reload()

    def action_mark(self) -> None:
        sid = self.selected_session()
        if sid is None:
            return
        marked = self.flowcli.toggle_mark(sid)
        self.notify(f"marked for diff: {', '.join(str(s) for s in marked) or 'none'}")
        self.shown = []
        self.query_one("#filters", Bar).show(self._filter_line())
        self.reload()

    def action_diff(self) -> None:
        self.flowcli.open_diff()

    def on_screen_resume(self) -> None:
        self.ticker.resume()
        # Marks may have changed on a session screen.
        self.query_one("#filters", Bar).show(self._filter_line())
        self.shown = []
        self.reload()
