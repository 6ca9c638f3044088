"""``flowcli run-next``, ``flowcli auto``, ``flowcli explain`` and ``flowcli demo``."""

import signal
import sys
from typing import Annotated, Any

import typer

from flowcli.cli.batch import BatchYesOpt, DryRunOpt, LimitOpt, WhereOpt
from flowcli.cli.context import open_db
from flowcli.cli.options import (
    JsonOption,
    RunOptions,
    SessionIdArg,
    SessionIdOrOptionArg,
    SessionOpt,
    session_id_given,
    with_run_options,
)
from flowcli.cli.params import int_limit
from flowcli.errors import EXIT_INTERRUPTED


@with_run_options(retries=True)
def run_next(
    ctx: typer.Context,
    session_id: SessionIdArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show which step would run and why; write nothing.")
    ] = False,
    run_options: RunOptions = RunOptions(),
    json_out: JsonOption = False,
) -> None:
    """Execute the next step of a session (starting it if it has not started)."""
    db = open_db(ctx)
    if dry_run:
        from flowcli.engine.explain import explain_next

        data = explain_next(db, session_id)
        if json_out:
            from flowcli.render.json_output import print_json

            print_json(data)
        else:
            from flowcli.render.runs import explain_panel

            explain_panel(data, title="run-next --dry-run: nothing written")
        return
    # From the step's own module, not the runner's face: a one-step command need not
    # load the auto loop.
    from flowcli.engine.attempt import run_next_step

    result = run_next_step(
        db,
        session_id,
        run_options.responder_options(),
        retries=run_options.retries,
        backoff=run_options.backoff,
    )
    show_step_result(
        db,
        result,
        json_out,
        failed=f"step failed: {result.error}",
        session_failed=f"; session {session_id} is now failed",
    )


def show_step_result(
    db: Any, result: Any, json_out: bool, *, failed: str, session_failed: str
) -> None:
    """Print what one step did (panel or JSON); a failed step then exits non-zero."""
    from flowcli.engine.attempt import step_report
    from flowcli.errors import StepFailedError

    payload = step_report(db, result)
    if json_out:
        from flowcli.render.json_output import print_json

        print_json(payload)
    else:
        from flowcli.render.runs import step_panel

        step_panel(payload, result)
    if result.failed:
        raise StepFailedError(failed + (session_failed if result.session_failed else ""))


class _StopFlag:
    """First Ctrl-C: stop after the current step commits. Second: abort it (rolled back)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_StopFlag":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. some test runners)
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        from flowcli.render.messages import info

        info("stopping after the current step (Ctrl-C again to abort it)…")

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _StepQuestion:
    """``auto --step``: asks on the terminal before each step; says what each one did."""

    def __init__(self, stop: _StopFlag) -> None:
        self.stop = stop
        self.ask_each = True

    def ask(self, upcoming: Any) -> bool:
        if not self.ask_each:
            return True
        from flowcli.render.messages import err_console
        from flowcli.render.safe_text import clipped as printable

        answer = typer.prompt(
            f"next: {printable(upcoming.label())}. "
            "Run it? [y]es, [n]o (stop), [c]ontinue without asking",
            default="y",
            show_default=False,
            err=True,
        )
        choice = answer.strip().lower()[:1]
        if self.stop.requested or choice not in ("y", "c"):
            return False
        if choice == "c":
            self.ask_each = False
            err_console().print("running the rest without asking")
        return True

    def report(self, result: Any) -> None:
        from flowcli.render.messages import info

        step = result.step
        what = f"step {step.order} {step.speaker} ({step.task_type})" if step else "step"
        log = result.log or {}
        if result.failed:
            info(f"{what}: attempt failed: {result.error}")
        else:
            info(f"{what}: {log.get('status', 'done')} (log {log.get('id')})")


@with_run_options(retries=True)
def auto(
    ctx: typer.Context,
    session_id_arg: SessionIdOrOptionArg = None,
    session: SessionOpt = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            "--max-steps", help="Stop after this many steps.", min=0, max=int_limit("count")
        ),
    ] = None,
    until_step: Annotated[
        int | None,
        typer.Option(
            "--until-step",
            help="Stop before the step with this order runs.",
            min=1,
            max=int_limit("count"),
        ),
    ] = None,
    run_options: RunOptions = RunOptions(),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    json_out: JsonOption = False,
    where: WhereOpt = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", help="With --where: sessions driven at once (threads).", min=1
        ),
    ] = 1,
    limit: LimitOpt = None,
    yes: BatchYesOpt = False,
    dry_run: DryRunOpt = False,
    break_at: Annotated[
        list[int] | None,
        typer.Option(
            "--break-at",
            help="Stop before the step with this order runs (the session stays runnable). "
            "Repeatable.",
            min=1,
            show_default=False,
        ),
    ] = None,
    break_when: Annotated[
        str | None,
        typer.Option(
            "--break-when",
            help="Stop before the first step for which this flow expression is true "
            "(names: round, step, loop_iteration, executed_steps, topic, vars, last, messages).",
            show_default=False,
        ),
    ] = None,
    step_mode: Annotated[
        bool,
        typer.Option(
            "--step",
            help="Ask before each step (needs a terminal): y runs it, n stops, "
            "c runs the rest without asking.",
        ),
    ] = False,
) -> None:
    """Run a session to its end (or until a stop condition), logging every step."""
    from dataclasses import asdict

    from flowcli.engine.breakpoints import Breakpoints
    from flowcli.engine.runner import auto as run_auto
    from flowcli.errors import FlowcliError, StepFailedError, UsageError
    from flowcli.render.json_output import print_json
    from flowcli.render.runs import AutoProgress, auto_summary

    if where is not None:
        _auto_where(ctx, where, locals())
        return
    sid = session_id_given(
        session_id_arg,
        session,
        which="which session? give its id: `flowcli auto 51` or `--session 51`",
    )
    if step_mode and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError("--step asks before each step: it needs a terminal on stdin and stderr")
    breakpoints = Breakpoints.parse(break_at or (), break_when)
    db = open_db(ctx)
    options = run_options.responder_options()
    from flowcli.render.output import settings

    quiet = quiet or settings().quiet
    # The question and a spinner would fight over the same terminal line.
    show_progress = not quiet and not step_mode and sys.stderr.isatty()
    with _StopFlag() as stop, AutoProgress(enabled=show_progress) as progress:
        asker = _StepQuestion(stop) if step_mode else None
        try:
            summary = run_auto(
                db,
                sid,
                options,
                max_steps=max_steps,
                until_step=until_step,
                retries=run_options.retries,
                backoff=run_options.backoff,
                should_stop=lambda: stop.requested,
                on_step=asker.report if asker is not None else progress.update,
                breakpoints=breakpoints or None,
                before_step=asker.ask if asker is not None else None,
            )
        except FlowcliError as exc:
            # Steps committed before the failure still get their summary on stdout; the
            # error stays one line on stderr (the boundary prints it) with its exit code.
            partial = exc.data.get("summary")
            if json_out and partial is not None:
                print_json(asdict(partial))
            raise
    if json_out:
        print_json(asdict(summary))
    elif not quiet:
        auto_summary(summary)
    if summary.stop_reason == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.final_status == "failed":
        raise StepFailedError(
            f"session {sid} failed: {summary.session.get('error_reason')} "
            f"(after fixing the cause: `flowcli session resume {sid}`)"
        )


def _auto_where(ctx: typer.Context, where: str, given: dict[str, Any]) -> None:
    """`auto --where …`: every matching session to its end, through the worker engine."""
    from flowcli.cli.batch import act_on_where, check_target
    from flowcli.errors import UsageError

    one = given["session"] if given["session"] is not None else given["session_id_arg"]
    check_target(one, where)
    for option, name in (
        ("--max-steps", "max_steps"),
        ("--until-step", "until_step"),
        ("--break-at", "break_at"),
        ("--break-when", "break_when"),
    ):
        if given[name]:
            raise UsageError(f"{option} applies to one session, not to --where batches")
    if given["step_mode"]:
        raise UsageError("--step applies to one session, not to --where batches")
    run_options: RunOptions = given["run_options"]
    options = run_options.responder_options()
    act_on_where(
        ctx,
        "auto",
        where,
        limit=given["limit"],
        yes=given["yes"],
        dry_run=given["dry_run"],
        json_out=given["json_out"],
        quiet=given["quiet"],
        concurrency=given["concurrency"],
        retries=run_options.retries,
        backoff=run_options.backoff,
        options=options,
    )


def explain(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """Say why the next step is next: condition, loop counters, round, limits. Writes nothing."""
    from flowcli.engine.explain import explain_next

    data = explain_next(open_db(ctx), session_id)
    if json_out:
        from flowcli.render.json_output import print_json

        print_json(data)
    else:
        from flowcli.render.runs import explain_panel

        explain_panel(data)


def demo(
    ctx: typer.Context,
    json_out: JsonOption = False,
) -> None:
    """Import the shipped demo flow, create a session, run it to the end, show its logs."""
    from dataclasses import asdict

    from flowcli.db.log_queries import iter_logs
    from flowcli.engine.demo import run_demo
    from flowcli.render.formatting import plural
    from flowcli.render.json_output import print_json
    from flowcli.render.log_table import logs_table
    from flowcli.render.messages import info

    db = open_db(ctx, create=True)
    result = run_demo(db)
    if json_out:
        print_json(
            {
                "flow_id": result.flow_id,
                "session_id": result.session_id,
                "summary": asdict(result.summary),
            }
        )
        return
    info(
        f"flow {result.flow_id} imported from {result.flow_file}; "
        f"session {result.session_id} created; "
        f"ran {plural(result.summary.steps_run, 'step')}: {result.summary.final_status}"
    )
    with db.read() as conn:
        logs_table(iter_logs(conn, result.session_id), title=f"session {result.session_id}")
    info(
        f"next: `flowcli logs {result.session_id}`, `flowcli session transcript "
        f"{result.session_id}`, `flowcli explain {result.session_id}`"
    )
