"""``flowcli logs …``: step execution logs as tables, trees and exports, followed live,
one log in detail, per-step statistics and a timeline."""

from datetime import datetime
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from flowcli.cli.context import open_db
from flowcli.cli.options import JsonOption, SessionIdOrOptionArg, SessionOpt, session_id_given
from flowcli.cli.params import bounded_float, int_limit
from flowcli.errors import EXIT_INTERRUPTED, raised_by_interrupt

DEFAULT_SUBCOMMAND = "list"


class _DefaultToList(TyperGroup):
    """`flowcli logs 51` means `flowcli logs list 51`; named subcommands still work."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [DEFAULT_SUBCOMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToList,
    help=(
        "Step execution logs: `flowcli logs SESSION_ID` shows a session's table; "
        "`show`, `stats` and `timeline` look closer."
    ),
    no_args_is_help=True,
)


def _parse_since(value: str | None) -> datetime | None:
    from flowcli.cli.options import parse_since

    return parse_since(value)


@app.command("list")
def list_(
    ctx: typer.Context,
    session_id_arg: SessionIdOrOptionArg = None,
    session: SessionOpt = None,
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
        typer.Option(
            "--last",
            help="The newest N executions, shown oldest first.",
            min=1,
            max=int_limit("count"),
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="At most N rows.", min=0, max=int_limit("count")),
    ] = None,
    offset: Annotated[
        int,
        typer.Option("--offset", help="Skip the first N rows.", min=0, max=int_limit("count")),
    ] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON array of full log rows.")
    ] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV with a header row.")] = False,
    tree: Annotated[
        bool, typer.Option("--tree", help="Nest each loop repeat under its first pass.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new executions until the session ends (Ctrl-C stops).",
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            help="Seconds between polls with --follow.",
            parser=bounded_float(0.05, "interval"),
        ),
    ] = 0.5,
) -> None:
    """Show a session's step executions as a table (or export them)."""
    from contextlib import closing

    from flowcli.db.log_rows import (
        LOG_COLUMNS,
        LOG_STATUSES,
        SUMMARY_COLUMNS,
        LogFilter,
        iter_log_batches,
        iter_log_rows,
    )
    from flowcli.errors import UsageError
    from flowcli.render.log_table import logs_table

    sid = session_id_given(
        session_id_arg,
        session,
        which="which session? `flowcli logs 51` or `flowcli logs --session 51`",
    )
    if sum([json_out, jsonl, csv_out, tree]) > 1:
        raise UsageError("choose one of --json, --jsonl, --csv and --tree")
    if follow and (json_out or tree):
        raise UsageError("--follow prints rows as they come: use it with the table or --jsonl")
    if follow and (limit is not None or offset):
        raise UsageError("--follow cannot be combined with --limit/--offset (use --last)")
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
    if follow:
        from flowcli.render.output import disable_paging

        disable_paging()  # a pager would hold rows that should show as they come
        _follow(db, sid, flt, interval, jsonl=jsonl, csv_out=csv_out)
        return
    # On the bare driver where it can be (a SQLite file): no SQLAlchemy import.
    with db.step_read() as tx:
        tx.load_session(sid)  # a clean error for an unknown id
        if json_out or jsonl or csv_out:
            from flowcli.render.exports import write_csv, write_json_array, write_jsonl

            write = write_json_array if json_out else write_jsonl if jsonl else write_csv
            # Closed here, inside the read, even when the reader goes away (a closed pipe).
            with closing(iter_log_batches(tx, sid, flt)) as batches:
                write(LOG_COLUMNS, batches)
            return
        # The table and the tree never show the JSON payloads: they are not read.
        with closing(iter_log_rows(tx, sid, flt, columns=SUMMARY_COLUMNS)) as rows:
            if tree:
                from flowcli.render.logs import logs_tree

                logs_tree(rows, title=f"session {sid}")
            else:
                logs_table(rows, title=f"session {sid}")


def _follow(db: Any, sid: int, flt: Any, interval: float, *, jsonl: bool, csv_out: bool) -> None:
    """Print rows as ``follow_logs`` yields them; Ctrl-C ends quietly with exit 130."""
    import sys

    from flowcli.db.log_follow import follow_logs
    from flowcli.render.log_table import stream_csv
    from flowcli.render.logs import FollowedRows, follow_jsonl
    from flowcli.render.messages import info

    rows = follow_logs(db, sid, flt, interval=interval)
    try:
        if jsonl:
            for row in rows:
                follow_jsonl(row)
        elif csv_out:
            stream_csv(_flushing(rows, sys.stdout), batch=1)
        else:
            printer = FollowedRows()
            printer.header()
            for row in rows:
                printer.row(row)
    except (KeyboardInterrupt, Exception) as exc:
        # Ctrl-C, or a driver's cleanup failing on the way out of it: either way, stop.
        if not raised_by_interrupt(exc):
            raise
        info("stopped following")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _flushing(rows: Any, stream: Any) -> Any:
    # Each CSV row reaches a reader as soon as it is written.
    for row in rows:
        yield row
        stream.flush()


LogIdArg = Annotated[
    int,
    typer.Argument(help="The log's id.", min=1, max=int_limit("count"), show_default=False),
]
SessionArg = Annotated[
    int,
    typer.Argument(help="The session's id.", min=1, max=int_limit("count"), show_default=False),
]


@app.command()
def show(ctx: typer.Context, log_id: LogIdArg, json_out: JsonOption = False) -> None:
    """One execution in full: every column, its JSON, and its context's diff against the
    session's previous execution."""
    from flowcli.db.log_queries import load_log_detail
    from flowcli.render.json_output import print_json
    from flowcli.render.logs import log_detail_view

    data = load_log_detail(open_db(ctx), log_id)
    if json_out:
        print_json(data)
    else:
        log_detail_view(data)


@app.command()
def stats(ctx: typer.Context, session_id: SessionArg, json_out: JsonOption = False) -> None:
    """Per step: runs, skips, failures, duration p50/p95/max and peak memory."""
    from flowcli.db.log_stats import step_stats
    from flowcli.render.json_output import print_json
    from flowcli.render.logs import stats_table

    data = step_stats(open_db(ctx), session_id)
    if json_out:
        print_json(data)
    else:
        stats_table(data)


@app.command()
def timeline(
    ctx: typer.Context,
    session_id: SessionArg,
    round_: Annotated[int | None, typer.Option("--round", help="Only this round.")] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", help="Only the newest N executions.", min=1, max=int_limit("count")),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """A bar per execution along the session's time span (failures marked ✗)."""
    from flowcli.db.log_queries import LogFilter
    from flowcli.db.log_stats import timeline as timeline_rows
    from flowcli.render.json_output import print_json
    from flowcli.render.logs import timeline_view

    data = timeline_rows(open_db(ctx), session_id, LogFilter(round_index=round_, last=last))
    if json_out:
        print_json(data)
    else:
        timeline_view(data)
