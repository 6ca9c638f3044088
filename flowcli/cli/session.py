"""``flowcli session …``: create sessions from flows and move them through their life."""

from collections.abc import Callable
from typing import Annotated, Any

import typer

from flowcli.cli.batch import BatchYesOpt, DryRunOpt, LimitOpt, WhereOpt, act_on_where, check_target
from flowcli.cli.context import open_db
from flowcli.cli.options import (
    MAX_ID,
    ArchiveOpt,
    JsonOption,
    NoArchiveOpt,
    RunOptions,
    SessionIdArg,
    YesOption,
    with_run_options,
)
from flowcli.cli.params import int_limit

app = typer.Typer(help="Create, list, show and control sessions.", no_args_is_help=True)

# `session cancel 5` acts on one session; `session cancel --where …` on a batch of them.
OptionalSessionIdArg = Annotated[
    int | None,
    typer.Argument(
        help="The session's id (or --where EXPR for many).", min=1, max=MAX_ID, show_default=False
    ),
]


@app.command()
def create(
    ctx: typer.Context,
    flow: Annotated[
        int,
        typer.Option(
            "--flow", help="The flow's id.", min=1, max=int_limit("count"), show_default=False
        ),
    ],
    topic: Annotated[
        str | None, typer.Option("--topic", help="Topic (default: the flow's).")
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role", help="Map a flow role ref to a role: REF=ROLE (name or id). Repeatable."
        ),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="Session variable KEY=VALUE (JSON or text). Repeatable."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create a session of a flow; prints its id. It starts on its first step."""
    from flowcli.engine.lifecycle import create_session, parse_assignments, parse_vars
    from flowcli.render.json_output import print_json

    role_map = dict(parse_assignments(role or [], "--role"))
    variables = parse_vars(var or [])
    session_id = create_session(
        open_db(ctx, create=True), flow, topic=topic, role_map=role_map, variables=variables
    )
    if json_out:
        print_json({"id": session_id})
    else:
        typer.echo(session_id)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only sessions in this status. Repeatable.")
    ] = None,
    flow: Annotated[
        int | None, typer.Option("--flow", help="Only sessions of this flow.", min=1)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only sessions created at or after this ISO 8601 time (UTC if no zone)."
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help="Only sessions this expression selects, e.g. \"status == 'failed' and "
            "'timeout' in last_error\" (docs/batch.md).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most N sessions.", min=0, max=MAX_ID)
    ] = None,
    offset: Annotated[
        int, typer.Option("--offset", help="Skip the first N sessions.", min=0, max=MAX_ID)
    ] = 0,
    json_out: JsonOption = False,
) -> None:
    """List sessions, newest first."""
    from flowcli.cli.options import parse_since
    from flowcli.render.json_output import print_json
    from flowcli.render.sessions import session_table

    filters: dict[str, Any] = {
        "flow_id": flow,
        "since": parse_since(since),
        "limit": limit,
        "offset": offset,
        "newest_first": True,
    }
    if where is not None:
        from flowcli.engine.selector import find_sessions

        sessions = find_sessions(open_db(ctx), where, status=status, **filters)
    else:
        from flowcli.engine.session_views import list_sessions

        sessions = list_sessions(open_db(ctx), status, **filters)
    if json_out:
        print_json(sessions)
    else:
        session_table(sessions)


@app.command()
def count(
    ctx: typer.Context,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help="Count the sessions this expression selects (default: all).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Count the sessions a --where expression selects (SQL answers what it can)."""
    from flowcli.engine.selector import count_sessions
    from flowcli.render.json_output import print_json

    data = count_sessions(open_db(ctx), where if where is not None else "True")
    if json_out:
        print_json(data)
    else:
        typer.echo(data["count"])


@app.command()
def show(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """Show a session: status, position, counters, roles and steps."""
    from flowcli.engine.session_views import show_session
    from flowcli.render.json_output import print_json
    from flowcli.render.sessions import session_panel

    data = show_session(open_db(ctx), session_id)
    if json_out:
        print_json(data)
    else:
        session_panel(data)


def _transition(
    ctx: typer.Context,
    session_id: int | None,
    action: str,
    json_out: bool,
    where: str | None = None,
    limit: int | None = None,
    yes: bool = False,
    dry_run: bool = False,
) -> None:
    from flowcli.engine.lifecycle import transition
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import info

    if check_target(session_id, where, **{"--limit": limit, "--dry-run": dry_run}):
        assert where is not None
        act_on_where(ctx, action, where, limit=limit, yes=yes, dry_run=dry_run, json_out=json_out)
        return
    assert session_id is not None
    position = transition(open_db(ctx), session_id, action)
    if json_out:
        print_json(position)
    else:
        info(f"session {session_id} is {position['status']}")


@app.command()
def start(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """Start a not_started session (the first step also starts it implicitly)."""
    _transition(ctx, session_id, "start", json_out)


@app.command()
def pause(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """Pause a running session; `auto` stops before its next step."""
    _transition(ctx, session_id, "pause", json_out)


def _batchable_transition(action: str, doc: str) -> Callable[..., None]:
    """A command that applies ``action`` to one session, or to every session a --where
    selects (as a batch: flowcli.cli.batch)."""

    def command(
        ctx: typer.Context,
        session_id: OptionalSessionIdArg = None,
        where: WhereOpt = None,
        limit: LimitOpt = None,
        yes: BatchYesOpt = False,
        dry_run: DryRunOpt = False,
        json_out: JsonOption = False,
    ) -> None:
        _transition(ctx, session_id, action, json_out, where, limit, yes, dry_run)

    command.__doc__ = doc
    return command


app.command("resume")(
    _batchable_transition(
        "resume", "Make a paused or failed session runnable again (a failed step runs again)."
    )
)
app.command("cancel")(_batchable_transition("cancel", "Cancel a session for good."))


@app.command()
def delete(
    ctx: typer.Context,
    session_id: SessionIdArg,
    archive: ArchiveOpt = None,
    no_archive: NoArchiveOpt = False,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Delete a session with its logs, messages and session roles, archived first
    (`db restore-archive` puts it back)."""
    from flowcli.cli.boundary import confirm_or_require_yes
    from flowcli.db.session_store import utcnow
    from flowcli.engine.lifecycle import show_session
    from flowcli.errors import UsageError
    from flowcli.maintenance.prune import delete_session, resolve_archive_path
    from flowcli.maintenance.selection import CHILD_TABLES
    from flowcli.render.formatting import plural
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import info, warn

    if archive is not None and no_archive:
        raise UsageError("choose --archive PATH or --no-archive, not both")
    db = open_db(ctx)
    data = show_session(db, session_id)
    logs = sum(data["log_counts"].values())
    now = utcnow()
    target = None if no_archive else resolve_archive_path(db, archive, None, now)
    confirm_or_require_yes(
        f"Delete session {session_id} ({data['status']}, {plural(logs, 'log row')}, "
        f"{plural(data['message_count'], 'message')})"
        + (f", archived first to {target}" if target else ", WITHOUT an archive")
        + "?",
        yes=yes,
        action=f"deleting session {session_id}",
    )
    if no_archive:
        warn("--no-archive: the session is deleted without an archive and cannot be restored")
    report = delete_session(db, session_id, archive_path=target, now=now)
    counts = {table: report.rows[table] for table in CHILD_TABLES}
    if json_out:
        print_json({"id": session_id, "deleted": counts, "archive": report.archive})
        return
    info(f"deleted session {session_id}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if report.archive:
        info(f"archived to {report.archive} (`flowcli db restore-archive` puts it back)")


# --- the dialogue and debugging (issue 6) -------------------------------------------------


@app.command()
def transcript(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """The dialogue as speaker panels grouped by round (Markdown rendered)."""
    from flowcli.engine.transcript import session_transcript
    from flowcli.render.json_output import print_json
    from flowcli.render.logs import transcript_view

    messages = session_transcript(open_db(ctx), session_id)
    if json_out:
        print_json(messages)
    else:
        transcript_view(session_id, messages)


@app.command()
def fork(
    ctx: typer.Context,
    session_id: SessionIdArg,
    at: Annotated[
        int,
        typer.Option(
            "--at",
            help="The log id of the execution to fork after.",
            min=1,
            max=int_limit("count"),
            show_default=False,
        ),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Change a session variable in the fork: VAR=VALUE (JSON or text)."
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create a new session in the state right after an execution; prints its id."""
    from flowcli.engine.debugging import fork_session
    from flowcli.engine.lifecycle import parse_assignments, parse_var_value
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import info

    changes = {k: parse_var_value(v) for k, v in parse_assignments(set_ or [], "--set")}
    data = fork_session(open_db(ctx), session_id, at, changes)
    if json_out:
        print_json({"id": data["id"]})
        return
    typer.echo(data["id"])
    copied = data["copied"]
    info(
        f"session {data['id']} forked from session {session_id} after execution "
        f"#{data['execution_order']} (log {at}): {copied['step_execution_logs']} log rows, "
        f"{copied['messages']} messages copied; it is {data['status']}"
    )


@app.command()
@with_run_options(retries=True)
def retry(
    ctx: typer.Context,
    session_id: OptionalSessionIdArg = None,
    where: WhereOpt = None,
    limit: LimitOpt = None,
    yes: BatchYesOpt = False,
    dry_run: DryRunOpt = False,
    run_options: RunOptions = RunOptions(),
    json_out: JsonOption = False,
) -> None:
    """Run a failed session's failed step again (resume, then one step)."""
    from flowcli.cli.run import show_step_result
    from flowcli.engine.debugging import retry_failed_step

    batch = check_target(session_id, where, **{"--limit": limit, "--dry-run": dry_run})
    options = run_options.responder_options()
    if batch:
        assert where is not None
        act_on_where(
            ctx,
            "retry",
            where,
            limit=limit,
            yes=yes,
            dry_run=dry_run,
            json_out=json_out,
            retries=run_options.retries,
            backoff=run_options.backoff,
            options=options,
        )
        return
    assert session_id is not None
    db = open_db(ctx)
    result = retry_failed_step(
        db, session_id, options, retries=run_options.retries, backoff=run_options.backoff
    )
    show_step_result(
        db,
        result,
        json_out,
        failed=f"step failed again: {result.error}",
        session_failed=f"; session {session_id} is failed",
    )


@app.command()
def skip(
    ctx: typer.Context,
    session_id: OptionalSessionIdArg = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why the step is skipped (kept in its log).")
    ] = None,
    where: WhereOpt = None,
    limit: LimitOpt = None,
    yes: BatchYesOpt = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOption = False,
) -> None:
    """Mark the current (or failed) step skipped and move on, as a false condition would."""
    from flowcli.engine.debugging import skip_step
    from flowcli.render.json_output import print_json
    from flowcli.render.logs import skip_panel

    if check_target(session_id, where, **{"--limit": limit, "--dry-run": dry_run}):
        assert where is not None
        act_on_where(
            ctx,
            "skip",
            where,
            limit=limit,
            yes=yes,
            dry_run=dry_run,
            json_out=json_out,
            reason=reason,
        )
        return
    assert session_id is not None
    data = skip_step(open_db(ctx), session_id, reason)
    if json_out:
        print_json(data)
    else:
        skip_panel(data)


@app.command()
def diff(
    ctx: typer.Context,
    session_a: Annotated[
        int,
        typer.Argument(help="Session A's id.", min=1, max=int_limit("count"), show_default=False),
    ],
    session_b: Annotated[
        int,
        typer.Argument(help="Session B's id.", min=1, max=int_limit("count"), show_default=False),
    ],
    json_out: JsonOption = False,
) -> None:
    """Compare two sessions' executions side by side, aligned by round, step and loop."""
    from flowcli.engine.debugging import diff_sessions
    from flowcli.render.json_output import print_json
    from flowcli.render.logs import diff_table

    data = diff_sessions(open_db(ctx), session_a, session_b)
    if json_out:
        print_json(data)
    else:
        diff_table(data)
