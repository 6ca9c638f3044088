"""``flowcli tui``: open the live session debugger (flowcli.tui) in the terminal."""

import sys
from typing import Annotated

import typer

from flowcli.cli.context import state
from flowcli.cli.options import (
    MAX_ID,
    RunOptions,
    with_run_options,
)


@with_run_options(retries=False)
def tui(
    ctx: typer.Context,
    session_id: Annotated[
        int | None,
        typer.Argument(
            help="Open this session's debugger (default: the sessions list).",
            min=1,
            max=MAX_ID,
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", help="Seconds between refreshes of the live views.", min=0.05, max=60
        ),
    ] = 1.0,
    run_options: RunOptions = RunOptions(),
) -> None:
    """A live, keyboard-first session debugger: logs, transcript, explain, breakpoints,
    step, run, fork and diff (needs `pip install 'flowcli[tui]'`; `?` lists the keys)."""
    from flowcli.errors import UsageError
    from flowcli.tui import require_textual

    require_textual()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("flowcli tui is a full-screen app and needs a terminal")
    options = run_options.responder_options()
    from flowcli.tui.app import FlowcliApp

    # The schema guard runs inside the app, after its first frame (FlowcliApp.check_database).
    app = FlowcliApp(
        state(ctx).database(), session_id=session_id, options=options, interval=interval
    )
    app.run()
    if app.fatal_error is not None:
        raise app.fatal_error
