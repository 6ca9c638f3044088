"""Dialogs over a screen: the keys overlay (``?``), the fork form, the break-when form."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static

from flowcli.render.safe_text import clipped as printable
from flowcli.render.safe_text import clipped_line as one_line

if TYPE_CHECKING:
    from flowcli.engine.breakpoints import Breakpoints

# Keys the widgets themselves answer, listed in the overlay with the screen's own.
WIDGET_KEYS = (
    ("↑ ↓ pgup pgdn", "move in the list, tree or pane that has focus"),
    ("tab / shift+tab", "move focus between the log, the panes and the tabs"),
    ("space", "fold or unfold a loop's repeats in the execution log"),
    ("enter", "open the session under the cursor (sessions list)"),
)
KEY_NAMES = {"question_mark": "?", "escape": "esc"}
# A fork form shows at most this many variables; the rest are copied unchanged.
MAX_FORM_VARIABLES = 40


def key_label(keys: str) -> str:
    return " / ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


def key_rows(screen: Screen[Any]) -> list[tuple[str, str]]:
    """The keys of ``screen`` and of the app, with what each does."""
    rows: list[tuple[str, str]] = []
    for source in (screen, screen.app):
        for binding in getattr(source, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description:
                rows.append((key_label(binding.key), binding.description))
    return rows


class HelpScreen(ModalScreen[None]):
    """``?``: every key of the screen below, including the ones the footer has no room for."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", show=False),
    ]

    def __init__(self, under: Screen[Any]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for keys, what in [*key_rows(self.under), *WIDGET_KEYS]:
            table.add_row(keys, what)
        with Vertical(classes="dialog"):
            yield Static(Text("keys (esc closes)", style="bold"))
            with VerticalScroll(id="help-body"):
                yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)


class ForkScreen(ModalScreen[dict[str, Any] | None]):
    """Fork at an execution, with the session's variables in a form to edit first.

    Dismisses with the changed variables (parsed as ``--set`` parses them), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "fork", "Fork"),
    ]

    def __init__(self, session_id: int, log_id: int, variables: dict[str, Any]) -> None:
        super().__init__()
        self.session_id = session_id
        self.log_id = log_id
        self.names = list(variables)[:MAX_FORM_VARIABLES]
        self.hidden = max(0, len(variables) - MAX_FORM_VARIABLES)
        self.original = {
            name: json.dumps(variables[name], ensure_ascii=False) for name in self.names
        }

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(
                Text(f"fork session {self.session_id} after log {self.log_id}", style="bold")
            )
            yield Static(
                Text(
                    "Edit variables (JSON, or plain text); enter or ctrl+s forks, esc cancels.",
                    style="dim",
                )
            )
            with VerticalScroll():
                for index, name in enumerate(self.names):
                    with Horizontal(classes="row"):
                        yield Label(one_line(name, 22), classes="name")
                        yield Input(value=printable(self.original[name]), id=f"var-{index}")
                if self.hidden:
                    yield Static(Text(f"{self.hidden} more variable(s) are copied as they are"))
                with Horizontal(classes="row"):
                    yield Label("new", classes="name")
                    yield Input(placeholder="NAME=VALUE (optional)", id="new-var")
            yield Static("", id="fork-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Fork", id="do-fork", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        first = self.query("Input").first()
        first.focus()

    def changes(self) -> dict[str, Any]:
        """The variables that differ from the session's; raises UsageError for bad input."""
        from flowcli.engine.lifecycle import parse_assignments, parse_var_value

        out: dict[str, Any] = {}
        for index, name in enumerate(self.names):
            raw = self.query_one(f"#var-{index}", Input).value
            if raw != printable(self.original[name]):
                out[name] = parse_var_value(raw)
        new = self.query_one("#new-var", Input).value.strip()
        if new:
            for key, value in parse_assignments([new], "new variable"):
                out[key] = parse_var_value(value)
        return out

    def action_fork(self) -> None:
        from flowcli.errors import FlowcliError

        try:
            changes = self.changes()
        except FlowcliError as exc:
            self.query_one("#fork-error", Static).update(Text(exc.message, style="red"))
            return
        self.dismiss(changes)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_fork()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "do-fork":
            self.action_fork()
        else:
            self.action_cancel()


class BreakWhenScreen(ModalScreen["Breakpoints | None"]):
    """A flow expression that stops a run before the first step it is true for."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: Breakpoints) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("break when (a flow expression; empty clears)", style="bold"))
            yield Static(
                Text(
                    "names: round, step, loop_iteration, executed_steps, topic, vars, last, "
                    "messages — e.g. round >= 2 and step == 3",
                    style="dim",
                )
            )
            yield Input(value=self.current.when or "", id="when")
            yield Static("", id="when-error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#when", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from flowcli.errors import FlowcliError

        text = event.value.strip()
        try:
            breaks = self.current.with_when(text or None)
        except FlowcliError as exc:
            self.query_one("#when-error", Static).update(Text(exc.message, style="red"))
            return
        self.dismiss(breaks)

    def action_cancel(self) -> None:
        self.dismiss(None)
