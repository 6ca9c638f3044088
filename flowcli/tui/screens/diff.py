"""Two marked sessions side by side: executions aligned by round, step and loop, with the
selected position's two messages in full below."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from flowcli.tui.views import DIFF_MARKERS, diff_cells, diff_side_view
from flowcli.tui.widgets import when_shown

MAX_DIFF_ROWS = 5000


class DiffScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back"),
        Binding("o", "only_differences", "Only differences"),
    ]

    def __init__(self, session_a: int, session_b: int) -> None:
        super().__init__()
        self.session_a = session_a
        self.session_b = session_b
        self.data: dict[str, Any] | None = None
        self.only_differences = False
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            Text(f"session {self.session_a} (A) vs session {self.session_b} (B): reading…"),
            id="diff-summary",
            classes="bar",
        )
        yield DataTable(id="diff-table", cursor_type="row")
        with Horizontal(id="diff-sides"):
            with VerticalScroll(id="diff-a"):
                yield Static(id="diff-a-body")
            with VerticalScroll(id="diff-b"):
                yield Static(id="diff-b-body")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"diff {self.session_a} / {self.session_b}"
        # The fixed columns and the cell padding take 66 cells; the messages share the rest.
        self.message_width = max(8, (self.app.size.width - 66) // 2)
        table = self.query_one("#diff-table", DataTable)
        for label, width in (
            ("", 6),
            ("rnd", 3),
            ("step", 4),
            ("loop", 4),
            ("A #", 4),
            ("A status", 9),
            ("A message", self.message_width),
            ("B #", 4),
            ("B status", 9),
            ("B message", self.message_width),
        ):
            table.add_column(label, width=width)
        table.focus()
        self._read()

    @work(thread=True, group="diff")
    def _read(self) -> None:
        from flowcli.tui.data import read_diff
        from flowcli.tui.failures import describe_failure

        app: Any = self.app
        try:
            data = read_diff(app.read_db, self.session_a, self.session_b)
        except Exception as exc:  # noqa: BLE001 - shown on the screen
            message = describe_failure(exc)
            app.call_from_thread(
                self.query_one("#diff-summary", Static).update, Text(message, style="red")
            )
            return
        app.call_from_thread(self._show, data)

    @when_shown
    def _show(self, data: dict[str, Any]) -> None:
        self.data = data
        s = data["summary"]
        self.query_one("#diff-summary", Static).update(
            Text(
                f"session {data['a']} (A) vs session {data['b']} (B): "
                f"{DIFF_MARKERS['same']} {s['same']} same, "
                f"{DIFF_MARKERS['different']} {s['different']} different, "
                f"{s['only_a']} only in A, {s['only_b']} only in B"
                + (" · showing only differences (o)" if self.only_differences else "")
            )
        )
        table = self.query_one("#diff-table", DataTable)
        table.clear()
        rows = [
            row for row in data["rows"] if not (self.only_differences and row["marker"] == "same")
        ]
        # Rows are added on the UI thread: beyond this many, the first ones are shown and
        # `flowcli session diff --json` has them all.
        self.rows = rows[:MAX_DIFF_ROWS]
        if len(rows) > MAX_DIFF_ROWS:
            self.notify(
                f"showing the first {MAX_DIFF_ROWS:,} of {len(rows):,} positions; "
                f"`flowcli session diff {self.session_a} {self.session_b} --json` has them all"
            )
        for row in self.rows:
            table.add_row(*diff_cells(row, self.message_width))
        self._show_sides(0)

    def _show_sides(self, index: int) -> None:
        row = self.rows[index] if 0 <= index < len(self.rows) else None
        a = row.get("a") if row else None
        b = row.get("b") if row else None
        order = row.get("step_order") if row else None
        self.query_one("#diff-a-body", Static).update(
            diff_side_view(f"A: session {self.session_a}", a, order)
        )
        self.query_one("#diff-b-body", Static).update(
            diff_side_view(f"B: session {self.session_b}", b, order)
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_sides(event.cursor_row)

    def action_only_differences(self) -> None:
        self.only_differences = not self.only_differences
        if self.data is not None:
            self._show(self.data)

    def action_back(self) -> None:
        self.app.pop_screen()
