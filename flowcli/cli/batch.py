"""``flowcli batch …`` (list, show, resume), and the one path every ``--where`` action
takes: preview, dry run or confirmation, then the batch with a progress display."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from flowcli.cli.context import open_db
from flowcli.cli.options import (
    JsonOption,
    RunOptions,
    with_run_options,
)
from flowcli.errors import EXIT_INTERRUPTED

app = typer.Typer(
    help="Batches of session actions (`--where`): list them, show one, resume one.",
    no_args_is_help=True,
)

BatchIdArg = Annotated[
    int, typer.Argument(help="The batch's id.", min=1, max=2**63 - 1, show_default=False)
]

# --- options the --where actions share ---------------------------------------------------
WhereOpt = Annotated[
    str | None,
    typer.Option(
        "--where",
        help="Act on every session this expression selects (docs/batch.md), as a batch.",
        show_default=False,
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", help="With --where: at most this many sessions (lowest ids).", min=1),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="With --where: list what would change; write nothing."),
]
BatchYesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="With --where: go ahead without asking."),
]


def check_target(session_id: int | None, where: str | None, **batch_only: Any) -> bool:
    """True for a --where batch; a usage error unless exactly one target is given."""
    if session_id is not None and where is not None:
        raise _usage("give a session id or --where, not both")
    if session_id is None and where is None:
        raise _usage("which sessions? give a session id, or --where EXPR for a batch")
    if where is None:
        given = [name for name, value in batch_only.items() if value not in (None, False)]
        if given:
            raise _usage(f"{given[0]} applies to --where batches only")
    return where is not None


def _usage(message: str) -> Exception:
    from flowcli.errors import UsageError

    return UsageError(message)


@contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """Ctrl-C or SIGTERM: finish the session in hand, then stop. A second Ctrl-C aborts it
    (its transaction rolls back; `batch resume` handles it again)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        from flowcli.render.messages import info

        info("stopping after the session in hand (Ctrl-C again to abort it)…")

    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    except ValueError:  # not the main thread
        pass
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_and_report(
    db: Any, batch_id: int, total: int, label: str, options: Any, json_out: bool, quiet: bool
) -> None:
    from dataclasses import asdict

    from flowcli.engine.batch_run import run_batch
    from flowcli.errors import FlowcliError
    from flowcli.render.batch import BatchProgress, report_summary
    from flowcli.render.json_output import print_json

    show = not quiet and not json_out and sys.stderr.isatty()
    with _stop_on_signal() as stop, BatchProgress(show, total, label) as progress:
        report = run_batch(db, batch_id, options=options, stop=stop, emit=progress.update)
    if json_out:
        print_json({**asdict(report), "open": report.open})
    elif not quiet:
        report_summary(report)
    if report.stopped:
        from flowcli.render.messages import info

        info(f"batch {batch_id} stopped; `flowcli batch resume {batch_id}` continues it")
        raise typer.Exit(EXIT_INTERRUPTED)
    if report.open:
        raise FlowcliError(
            f"batch {batch_id}: {report.open} session(s) not done (another process was "
            f"running them); `flowcli batch resume {batch_id}` continues it"
        )


def act_on_where(
    ctx: typer.Context,
    action: str,
    where: str,
    *,
    limit: int | None,
    yes: bool,
    dry_run: bool,
    json_out: bool,
    quiet: bool = False,
    reason: str | None = None,
    concurrency: int = 1,
    retries: int = 2,
    backoff: float = 0.5,
    options: Any = None,
) -> None:
    """The --where form of an action: preview, then dry run, or confirm and run a batch."""
    from flowcli.engine.batch import BatchSettings, create_batch, preview
    from flowcli.engine.batch_run import dry_run as run_dry
    from flowcli.errors import UsageError
    from flowcli.render.batch import VERBS, dry_run_table, preview_view
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import info

    db = open_db(ctx)
    plan = preview(db, action, where, limit=limit)
    if not quiet:
        preview_view(plan)
    if not plan.ids:
        if json_out:
            print_json({"action": action, "where": where, "matched": 0, "batch": None})
        return
    if dry_run:
        rows = run_dry(db, plan, reason=reason)
        if json_out:
            print_json(
                {"action": action, "where": where, "matched": plan.matched, "sessions": rows}
            )
        else:
            dry_run_table(action, rows)
        return
    verb = VERBS[action]
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"this would {verb} {len(plan.ids):,} session(s); pass --yes to go ahead "
                "(there is no terminal to ask on), or --dry-run to see each change"
            )
        typer.confirm(f"{verb.capitalize()} {len(plan.ids):,} session(s)?", abort=True, err=True)
    settings = BatchSettings.with_responder(
        options if action in ("retry", "auto") else None,
        reason=reason,
        limit=limit,
        concurrency=concurrency,
        retries=retries,
        backoff=backoff,
    )
    batch_id = create_batch(db, plan, settings)
    if not quiet:
        info(f"batch {batch_id}: {action} on {len(plan.ids):,} session(s)")
    label = f"batch {batch_id} {action}"
    _run_and_report(db, batch_id, len(plan.ids), label, options, json_out, quiet)


# --- the group -----------------------------------------------------------------------------


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", help="The newest this many batches (0: all).", min=0)
    ] = 50,
    json_out: JsonOption = False,
) -> None:
    """List batches, newest first, with their progress."""
    from flowcli.engine.batch import list_batches
    from flowcli.render.batch import batch_table
    from flowcli.render.json_output import print_json

    batches = list_batches(open_db(ctx), limit=limit or None)
    if json_out:
        print_json(batches)
    else:
        batch_table(batches)


@app.command()
def show(
    ctx: typer.Context,
    batch_id: BatchIdArg,
    items: Annotated[
        int,
        typer.Option("--items", help="Show this many of its sessions (0: all).", min=0),
    ] = 100,
    json_out: JsonOption = False,
) -> None:
    """Show a batch: its selector, action, progress and each session's outcome."""
    from flowcli.engine.batch import show_batch
    from flowcli.render.batch import batch_panel
    from flowcli.render.json_output import print_json

    shown = None if json_out or items == 0 else items
    data = show_batch(open_db(ctx), batch_id, items=shown)
    if json_out:
        print_json(data)
    else:
        batch_panel(data, shown)


@app.command()
@with_run_options(retries=False)
def resume(
    ctx: typer.Context,
    batch_id: BatchIdArg,
    run_options: RunOptions = RunOptions(),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Continue a stopped or killed batch: sessions already handled are skipped.

    Retry and auto batches run steps with the responder options they were started with
    (an API key is never stored: give it again, or set FLOWCLI_LLM_API_KEY).
    """
    from flowcli.engine.batch import show_batch
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import info

    db = open_db(ctx)
    data = show_batch(db, batch_id, items=0)
    left = sum(data["outcomes"][o] for o in ("pending", "started", "busy"))
    if not left:
        if json_out:
            print_json({"id": batch_id, "status": data["status"], "open": 0})
        elif not quiet:
            info(f"batch {batch_id} is done: every session was handled; nothing to resume")
        return
    options = run_options.responder_options()
    if not quiet:
        info(f"batch {batch_id}: {data['action']} on the {left:,} session(s) not yet handled")
    label = f"batch {batch_id} {data['action']}"
    _run_and_report(db, batch_id, data["total"], label, options, json_out, quiet)
