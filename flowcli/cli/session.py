"""``flowcli session …``: create sessions from flows and move them through their life."""

from __future__ import annotations

from typing import Annotated

import typer

from flowcli.cli.options import JsonOption, SessionIdArg, YesOption
from flowcli.cli.state import open_db

app = typer.Typer(help="Create, list, show and control sessions.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    flow: Annotated[int, typer.Option("--flow", help="The flow's id.", min=1, show_default=False)],
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
    from flowcli.render import print_json

    role_map = dict(parse_assignments(role or [], "--role"))
    variables = parse_vars(var or [])
    session_id = create_session(
        open_db(ctx), flow, topic=topic, role_map=role_map, variables=variables
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
    json_out: JsonOption = False,
) -> None:
    """List sessions."""
    from flowcli.engine.lifecycle import list_sessions
    from flowcli.render import print_json, session_table

    sessions = list_sessions(open_db(ctx), status)
    if json_out:
        print_json(sessions)
    else:
        session_table(sessions)


@app.command()
def show(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """Show a session: status, position, counters, roles and steps."""
    from flowcli.engine.lifecycle import show_session
    from flowcli.render import print_json, session_panel

    data = show_session(open_db(ctx), session_id)
    if json_out:
        print_json(data)
    else:
        session_panel(data)


def _transition(ctx: typer.Context, session_id: int, action: str, json_out: bool) -> None:
    from flowcli.engine.lifecycle import transition
    from flowcli.render import info, print_json

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


@app.command()
def resume(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """Make a paused or failed session runnable again (a failed step runs again)."""
    _transition(ctx, session_id, "resume", json_out)


@app.command()
def cancel(ctx: typer.Context, session_id: SessionIdArg, json_out: JsonOption = False) -> None:
    """Cancel a session for good."""
    _transition(ctx, session_id, "cancel", json_out)


@app.command()
def delete(
    ctx: typer.Context,
    session_id: SessionIdArg,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Delete a session with its logs, messages and session roles."""
    from flowcli.engine.lifecycle import delete_session, show_session
    from flowcli.render import info, print_json

    db = open_db(ctx)
    data = show_session(db, session_id)
    if not yes:
        logs = sum(data["log_counts"].values())
        typer.confirm(
            f"Delete session {session_id} ({data['status']}, {logs} log rows, "
            f"{data['message_count']} messages)?",
            abort=True,
            err=True,
        )
    counts = delete_session(db, session_id)
    if json_out:
        print_json({"id": session_id, "deleted": counts})
    else:
        info(f"deleted session {session_id}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
