"""The ``flowcli tui`` application: its screens, the one run at a time, and the database.

The app owns what outlives a screen: the database (an action handle for the engine's
writes, and a read handle with a short busy timeout for the live views), the marked
sessions, each session's breakpoints, and the run in progress, which Ctrl-C stops after
its current step. Every action calls the engine function the CLI calls, in a worker
thread, so the screen never waits for the database or a responder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType

from flowcli.tui import DEFAULT_WINDOW
from flowcli.tui.failures import describe_failure

if TYPE_CHECKING:
    from textual.screen import Screen

    from flowcli.db.connection import Database
    from flowcli.engine.breakpoints import Breakpoints
    from flowcli.engine.responders import ResponderOptions

# A live view's read gives up this soon on a locked database and tries again on the next
# refresh, so a long write by another process never holds the screen.
READ_BUSY_TIMEOUT = 0.25
DEFAULT_INTERVAL = 1.0


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class RunInProgress:
    """The one action running in a worker: which session, what, and a stop request."""

    session_id: int
    what: str
    stop_requested: bool = False


class FlowcliApp(App[None]):
    """Sessions list first; a session's debugger on top; dialogs over that."""

    TITLE = "flowcli"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    .bar { height: auto; max-height: 3; padding: 0 1; background: $boost; }
    .error { color: $error; }
    DataTable { height: 1fr; }
    #main { height: 1fr; }
    #left { width: 42%; min-width: 30; border-right: solid $primary-darken-2; }
    #right { width: 1fr; }
    #logtree { height: 1fr; }
    .pane-title { height: 1; padding: 0 1; text-style: bold; background: $primary-darken-2; }
    TabbedContent { height: 1fr; }
    TabPane { padding: 0 1; }
    ModalScreen { align: center middle; }
    .dialog {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    .dialog Input { margin: 0 0 0 0; }
    .dialog .row { height: auto; }
    .dialog .name { width: 24; padding: 1 1 0 0; }
    .dialog .buttons { height: auto; align-horizontal: right; }
    #diff-table { height: 1fr; }
    #diff-sides { height: 40%; }
    #diff-a, #diff-b { width: 1fr; padding: 0 1; }
    #help-body { height: auto; max-height: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+c",
            "interrupt",
            "Stop the run after its step; idle, quit",
            show=False,
            priority=True,
        ),
        Binding("question_mark", "help", "Keys"),
    ]

    def __init__(
        self,
        db: Database,
        *,
        session_id: int | None = None,
        options: ResponderOptions | None = None,
        interval: float = DEFAULT_INTERVAL,
        now: Callable[[], datetime] = utcnow,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        super().__init__()
        from flowcli.db.connection import Database

        self.db = db
        self.read_db = Database(db.target, busy_timeout=min(db.busy_timeout, READ_BUSY_TIMEOUT))
        self.options = options
        self.interval = interval
        self.now = now
        self.window = window
        self.start_session = session_id
        self.breakpoints: dict[int, Breakpoints] = {}
        self.marked: list[int] = []
        self.run_in_progress: RunInProgress | None = None
        self.fatal_error: BaseException | None = None
        self.database_ready = False
        self._quit_after_run = False

    # --- start-up ---------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        # The sessions list is the app's first screen itself: pushing it over Textual's
        # empty default screen would lay out and paint one screen more before the first
        # frame.
        from flowcli.tui.screens.sessions import SessionsScreen

        return SessionsScreen()

    def on_ready(self) -> None:
        # After the first frame: what the first screen left out to draw it sooner, then
        # the check, which imports SQLAlchemy and connects (a worker doing that during
        # start-up would compete with the first paint for the GIL).
        for screen in self.screen_stack:
            build = getattr(screen, "build_table", None)
            if build is not None:
                screen.call_after_refresh(build)
        self.check_database()

    @work(thread=True, group="startup")
    def check_database(self) -> None:
        """The schema guard (and the session given on the command line), after the first
        frame: the screen is up at once, and a bad database ends the app with one line."""
        from flowcli.db import session_store as store
        from flowcli.db.schema import require_schema

        try:
            require_schema(self.db)
            if self.start_session is not None:
                with self.read_db.read() as conn:
                    store.load_session(conn, self.start_session)
        except BaseException as exc:  # noqa: BLE001 - every failure ends the app, reported
            self.call_from_thread(self.fail, exc)
            return
        self.call_from_thread(self._database_checked)

    @work(thread=True, group="startup")
    def preload_session_modules(self) -> None:
        """Load what opening a session needs, off the UI thread, so the first session
        opened does not wait for imports. Called once the sessions list is on the screen:
        before, these imports would compete with reading and drawing it for the GIL."""
        import flowcli.engine.explain
        import flowcli.engine.transcript
        import flowcli.tui.screens.session  # noqa: F401

    def _database_checked(self) -> None:
        self.database_ready = True
        for screen in self.screen_stack:
            reload = getattr(screen, "reload", None)
            if reload is not None:
                reload()
        if self.start_session is not None:
            # Opened once the session is known to exist, over the list it belongs to.
            self.open_session(self.start_session)

    def fail(self, exc: BaseException) -> None:
        """End the app; the command line reports ``exc`` as every command does."""
        self.fatal_error = exc
        self.exit(return_code=int(getattr(exc, "exit_code", 1)))

    # --- navigation -------------------------------------------------------------------

    def open_session(self, session_id: int) -> None:
        from flowcli.tui.screens.session import SessionScreen

        self.push_screen(SessionScreen(session_id))

    def action_help(self) -> None:
        from flowcli.tui.screens.dialogs import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.screen))

    # --- marks and breakpoints ------------------------------------------------------------

    def toggle_mark(self, session_id: int) -> list[int]:
        """Mark a session for diff; a third mark drops the oldest."""
        if session_id in self.marked:
            self.marked.remove(session_id)
        else:
            self.marked = [*self.marked, session_id][-2:]
        return self.marked

    def open_diff(self) -> None:
        if len(self.marked) < 2:
            shown = ", ".join(str(s) for s in self.marked) or "none"
            self.notify(f"mark two sessions with m to diff them (marked: {shown})")
            return
        from flowcli.tui.screens.diff import DiffScreen

        self.push_screen(DiffScreen(self.marked[0], self.marked[1]))

    def breakpoints_for(self, session_id: int) -> Breakpoints:
        from flowcli.engine.breakpoints import Breakpoints

        return self.breakpoints.get(session_id) or Breakpoints()

    # --- the one action at a time ---------------------------------------------------------

    def start_action(
        self,
        session_id: int,
        what: str,
        action: Callable[[RunInProgress], Any],
        done: Callable[[Any], None],
        failed: Callable[[str], None],
    ) -> bool:
        """Run ``action`` in a worker; ``done`` or ``failed`` run on the UI thread after."""
        if self.run_in_progress is not None:
            busy = self.run_in_progress
            self.notify(
                f"{busy.what} (session {busy.session_id}) is still running; "
                "p or ctrl+c stops it after its current step",
                severity="warning",
            )
            return False
        run = RunInProgress(session_id, what)
        self.run_in_progress = run
        self._run_worker(run, action, done, failed)
        return True

    @work(thread=True, group="action")
    def _run_worker(
        self,
        run: RunInProgress,
        action: Callable[[RunInProgress], Any],
        done: Callable[[Any], None],
        failed: Callable[[str], None],
    ) -> None:
        from flowcli.errors import FlowcliError

        try:
            result = action(run)
        except FlowcliError as exc:
            self.call_from_thread(self._action_ended, failed, exc.message)
        except Exception as exc:  # noqa: BLE001 - shown in the app, which keeps running
            self.call_from_thread(self._action_ended, failed, describe_failure(exc))
        else:
            self.call_from_thread(self._action_ended, done, result)

    def _action_ended(self, callback: Callable[[Any], None], value: Any) -> None:
        self.run_in_progress = None
        callback(value)
        if self._quit_after_run:
            self.exit()

    def request_stop(self) -> bool:
        run = self.run_in_progress
        if run is None:
            return False
        run.stop_requested = True
        self.notify(f"stopping {run.what} after the current step…")
        return True

    def action_interrupt(self) -> None:
        """Ctrl-C: stop the run after its current step, as ``auto`` does; idle, quit."""
        if not self.request_stop():
            self.exit()

    def action_quit_app(self) -> None:
        if self.run_in_progress is not None and not self._quit_after_run:
            self._quit_after_run = True
            self.request_stop()
            self.notify("quitting once the current step has been written (q again: now)")
            return
        self.exit()
