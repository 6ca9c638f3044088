"""``flowcli logs …``: step execution logs as tables, trees and exports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from flowcli.cli.state import open_db

DEFAULT_SUBCOMMAND = "list"


class _DefaultToList(TyperGroup):
    """`flowcli logs 51` means `flowcli logs list 51`; named subcommands still work."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [DEFAULT_SUBCOMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToList,
    help="Step execution logs: `flowcli logs SESSION_ID` shows a session's table.",
    no_args_is_help=True,
)


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from flowcli.errors import UsageError

    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {value!r} is not a time; use ISO 8601 such as 2026-11-28T10:00:00"
        ) from None
    if parsed.tzinfo is not None:
        from datetime import UTC

        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


@app.command("list")
def list_(
    ctx: typer.Context,
    session_id_arg: Annotated[
        int | None,
        typer.Argument(help="The session's id (or use --session).", min=1, show_default=False),
    ] = None,
    session: Annotated[
        int | None, typer.Option("--session", "-s", help="The session's id.", min=1)
    ] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only this status. Repeatable.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed executions.")] = False,
    step: Annotated[
        int | None, typer.Option("--step", help="Only the step with this order.")
    ] = None,
    round_: Annotated[int | None, typer.Option("--round", help="Only this round.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only executions created at or after this ISO time (UTC)."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", help="The newest N executions, shown oldest first.", min=1),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N rows.", min=0)] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip the first N rows.", min=0)] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON array of full log rows.")
    ] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV with a header row.")] = False,
) -> None:
    """Show a session's step executions as a table (or export them)."""
    from flowcli.db.log_queries import LOG_STATUSES, LogFilter, iter_logs
    from flowcli.errors import UsageError
    from flowcli.render import logs_table, stream_csv, stream_json_array, stream_jsonl

    if session_id_arg is not None and session is not None and session_id_arg != session:
        raise UsageError("give the session id once (positionally or with --session)")
    sid = session if session is not None else session_id_arg
    if sid is None:
        raise UsageError("which session? `flowcli logs 51` or `flowcli logs --session 51`")
    if sum([json_out, jsonl, csv_out]) > 1:
        raise UsageError("choose one of --json, --jsonl and --csv")
    statuses = list(status or [])
    if failed:
        statuses.append("failed")
    for s in statuses:
        if s not in LOG_STATUSES:
            raise UsageError(f"unknown status {s!r}; choose from {', '.join(LOG_STATUSES)}")
    flt = LogFilter(
        statuses=statuses,
        step_order=step,
        round_index=round_,
        since=_parse_since(since),
        last=last,
        limit=limit,
        offset=offset,
    )
    db = open_db(ctx)
    with db.read() as conn:
        from flowcli.db import session_store as store

        store.load_session(conn, sid)  # a clean error for an unknown id
        rows = iter_logs(conn, sid, flt)
        if json_out:
            stream_json_array(rows)
        elif jsonl:
            stream_jsonl(rows)
        elif csv_out:
            stream_csv(rows)
        else:
            logs_table(rows, title=f"session {sid}")
