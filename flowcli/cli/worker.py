"""``flowcli worker``: drain runnable sessions, alone or beside other workers."""

import signal
import sys
import threading
from typing import Annotated, Any

import typer

from flowcli.cli.context import open_db
from flowcli.cli.options import (
    RunOptions,
    with_run_options,
)
from flowcli.cli.params import bounded_float, int_limit
from flowcli.errors import EXIT_FAILURE, EXIT_INTERRUPTED


@with_run_options(retries=True)
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            help="Sessions driven at once (threads).",
            min=1,
            max=int_limit("concurrency"),
        ),
    ] = 1,
    session: Annotated[
        list[int] | None,
        typer.Option(
            "--session",
            "-s",
            help="Only these sessions (repeatable).",
            min=1,
            max=int_limit("count"),
        ),
    ] = None,
    poll: Annotated[
        float,
        typer.Option(
            "--poll",
            help="Seconds between looks for work when idle.",
            parser=bounded_float(0.01, "poll"),
        ),
    ] = 1.0,
    max_idle: Annotated[
        float | None,
        typer.Option(
            "--max-idle",
            help="Exit after this many seconds without work (default: run until stopped).",
            parser=bounded_float(0.0, "max_idle"),
        ),
    ] = None,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            help="Seconds a claim on a session lasts without renewal; "
            "a crashed worker's sessions are picked up after it.",
            parser=bounded_float(0.5, "lease"),
        ),
    ] = 30.0,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            help="Steps of one session before moving to the next.",
            min=1,
            max=int_limit("batch"),
        ),
    ] = 50,
    run_options: RunOptions = RunOptions(),
    json_out: Annotated[
        bool, typer.Option("--json", help="Events as JSON lines on stdout (and the summary).")
    ] = False,
) -> None:
    """Run the steps of every running session (not_started ones wait for `session start`).

    Any number of workers, on any number of machines sharing a PostgreSQL database, can
    run at once: each step runs exactly once. SIGTERM or Ctrl-C finishes the steps in
    flight, releases the claims and exits.
    """
    from dataclasses import asdict

    from flowcli.engine.worker import WorkerOptions, run_worker
    from flowcli.render.json_output import print_jsonl
    from flowcli.render.worker import worker_event, worker_summary

    db = open_db(ctx, create=True)
    options = WorkerOptions(
        concurrency=concurrency,
        sessions=tuple(session or ()),
        poll=poll,
        max_idle=max_idle,
        lease=lease,
        batch=batch,
        retries=run_options.retries,
        backoff=run_options.backoff,
        responder=run_options.responder_options(),
    )
    stop = threading.Event()
    interrupted: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        interrupted.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with lock:
            if json_out:
                print_jsonl([event])
            else:
                worker_event(event)

    try:
        summary = run_worker(db, options, emit=emit, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    data = asdict(summary)
    if json_out:
        print_jsonl([{"event": "summary", **data}])
    else:
        worker_summary(data)
    sys.stdout.flush()
    if summary.errors:
        raise typer.Exit(EXIT_FAILURE)
    if interrupted and interrupted[0] == signal.SIGINT:
        raise typer.Exit(EXIT_INTERRUPTED)
