"""``flowcli tui``: open the live session debugger (flowcli.tui) in the terminal."""

import sys
from typing import Annotated

import typer

from flowcli.cli.context import state
from flowcli.cli.options import (
    MAX_ID,
    LlmBaseUrlOpt,
    LlmKeyOpt,
    LlmModelOpt,
    LlmRetriesOpt,
    LlmTimeoutOpt,
    ResponderOpt,
    TemplateOpt,
)


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
    responder: ResponderOpt = None,
    template: TemplateOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    llm_model: LlmModelOpt = None,
    llm_api_key: LlmKeyOpt = None,
    llm_timeout: LlmTimeoutOpt = None,
    llm_retries: LlmRetriesOpt = None,
) -> None:
    """A live, keyboard-first session debugger: logs, transcript, explain, breakpoints,
    step, run, fork and diff (needs `pip install 'flowcli[tui]'`; `?` lists the keys)."""
    from flowcli.cli.run import _options
    from flowcli.errors import UsageError
    from flowcli.tui import require_textual

    require_textual()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("flowcli tui is a full-screen app and needs a terminal")
    options = _options(
        responder, template, llm_base_url, llm_model, llm_api_key, llm_timeout, llm_retries
    )
    from flowcli.tui.app import FlowcliApp

    # The schema guard runs inside the app, after its first frame (FlowcliApp.check_database).
    app = FlowcliApp(
        state(ctx).database(), session_id=session_id, options=options, interval=interval
    )
    app.run()
    if app.fatal_error is not None:
        raise app.fatal_error
