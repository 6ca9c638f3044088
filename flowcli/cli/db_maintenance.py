"""``flowcli db prune|restore-archive|backup|restore|vacuum|size``: keeping a database
healthy for years. The commands are plain functions; ``flowcli.cli.db`` registers them
on the ``db`` group, after the schema commands."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from flowcli.cli.context import open_db
from flowcli.cli.options import MAX_ID, ArchiveOpt, JsonOption, NoArchiveOpt, YesOption
from flowcli.errors import EXIT_FAILURE


def _confirm_destructive(question: str, what: str, yes: bool) -> None:
    """Ask on a terminal; anywhere else a destructive command needs --yes."""
    from flowcli.cli.boundary import confirm_or_require_yes

    confirm_or_require_yes(question, yes=yes, action=what)


def prune(
    ctx: typer.Context,
    session_ids: Annotated[
        list[int] | None,
        typer.Argument(
            help="Prune exactly these sessions (any status; not while a step runs).",
            min=1,
            max=MAX_ID,
            show_default=False,
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than", help="Sessions that ended more than DURATION ago (90d, 12h, 2w…)."
        ),
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only this status (default: finished, failed, cancelled, terminated). Repeatable.",
        ),
    ] = None,
    flow: Annotated[
        list[int] | None, typer.Option("--flow", help="Only sessions of this flow. Repeatable.")
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option("--keep-last", help="Always keep the newest N of each flow.", min=0),
    ] = None,
    logs_only: Annotated[
        bool,
        typer.Option(
            "--logs-only",
            help="Keep the sessions and messages; drop only their step logs, after writing a "
            "per-step summary into each session (`logs stats` still answers).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print what would go (sessions, rows, bytes); change nothing."
        ),
    ] = False,
    archive: ArchiveOpt = None,
    no_archive: NoArchiveOpt = False,
    batch: Annotated[
        int,
        typer.Option(
            "--batch", help="Rows per short transaction (whole sessions; never split).", min=1
        ),
    ] = 500,
    policy: Annotated[
        bool,
        typer.Option(
            "--policy",
            help="Apply [retention] from flowcli.toml or ~/.config/flowcli/config.toml "
            "(options given here win).",
        ),
    ] = False,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Archive, verify, then delete ended sessions (or only their step logs) in batches."""

    from flowcli.errors import UsageError
    from flowcli.maintenance.prune import plan_prune, resolve_archive_path, run_prune
    from flowcli.maintenance.retention import parse_duration, retention_policy
    from flowcli.maintenance.selection import PruneCriteria
    from flowcli.render.json_output import print_json
    from flowcli.render.maintenance import PruneProgressDisplay, prune_plan, prune_report
    from flowcli.render.messages import info, warn

    if archive is not None and no_archive:
        raise UsageError("choose --archive PATH or --no-archive, not both")
    archive_folder = None
    header: dict[str, object] = {}
    if policy:
        rules = retention_policy()
        if rules.is_empty:
            raise UsageError(
                "--policy: no [retention] older_than or keep_last is set in flowcli.toml or "
                "~/.config/flowcli/config.toml"
            )
        older_than = older_than if older_than is not None else rules.older_than
        keep_last = keep_last if keep_last is not None else rules.keep_last
        archive_folder = rules.archive_dir
        header["policy"] = rules.to_mapping()
    criteria = PruneCriteria(
        session_ids=list(session_ids or []),
        older_than=parse_duration(older_than) if older_than is not None else None,
        statuses=list(status or []),
        flows=list(flow or []),
        keep_last=keep_last,
    )
    criteria.validate()
    db = open_db(ctx)
    from flowcli.db.session_store import utcnow

    now = utcnow()
    target = None if no_archive else resolve_archive_path(db, archive, archive_folder, now)
    plan = plan_prune(db, criteria, logs_only=logs_only, archive_path=target, now=now)
    if dry_run:
        if json_out:
            print_json(plan.to_json())
        else:
            prune_plan(plan.to_json())
            info("--dry-run: nothing was changed")
        return
    if not plan.sessions:
        if json_out:
            print_json({"mode": "logs-only" if logs_only else "sessions", "session_count": 0})
        else:
            info("nothing to prune: no session matches")
        return
    if no_archive:
        warn("--no-archive: the pruned rows are deleted without an archive and cannot be restored")
    rows = plan.rows
    what = "step logs of " if logs_only else ""
    _confirm_destructive(
        f"Prune {what}{len(plan.sessions):,} session(s) ({rows['step_execution_logs']:,} log rows, "
        f"{rows['messages']:,} messages)"
        + (
            f", archived first to {plan.archive_path}"
            if plan.archive_path
            else ", WITHOUT an archive"
        )
        + "?",
        f"db prune would delete {what}{len(plan.sessions):,} session(s)",
        yes,
    )
    show = sys.stderr.isatty() and not json_out
    with PruneProgressDisplay(show, len(plan.sessions)) as display:
        report = run_prune(
            db, plan, batch_rows=batch, archive_header=header, progress=display.update
        )
    if json_out:
        print_json(report.to_json())
    else:
        prune_report(report.to_json())


def restore_archive(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="An archive `db prune` wrote.", show_default=False)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only verify the archive; change nothing.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Verify an archive, then put its sessions back (new ids where theirs are taken)."""
    from flowcli.maintenance.restore import restore_archive as run_restore
    from flowcli.render.json_output import print_json
    from flowcli.render.maintenance import restore_archive_report

    report = run_restore(open_db(ctx), path, dry_run=dry_run)
    data = report.to_json()
    if json_out:
        print_json(data)
    else:
        restore_archive_report(data)
    if report.failed:
        raise typer.Exit(EXIT_FAILURE)


def backup(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The backup file to create.", show_default=False)],
    json_out: JsonOption = False,
) -> None:
    """An online, consistent copy (SQLite backup API; pg_dump), integrity-checked."""
    from flowcli.maintenance.backup import backup_database
    from flowcli.render.json_output import print_json
    from flowcli.render.maintenance import human_bytes
    from flowcli.render.messages import info

    result = backup_database(open_db(ctx, require_schema=False), path)
    if json_out:
        print_json(result.to_json())
    else:
        typer.echo(result.path)
        info(f"backed up {human_bytes(result.bytes)} with the {result.method}; {result.verified}")


def restore(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A backup `db backup` made.", show_default=False)],
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Replace the database with a backup (refused while a process holds it; the current
    file is kept first)."""
    from flowcli.maintenance.backup import check_pg_dump, check_restore_source, restore_database
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import info

    db = open_db(ctx, require_schema=False)
    if db.is_sqlite:
        check_restore_source(path)
    else:
        check_pg_dump(path)
    _confirm_destructive(
        f"Replace {db.target.display} with the backup {path}? (the current file is kept first)",
        f"db restore would replace {db.target.display}",
        yes,
    )
    result = restore_database(db, path)
    if json_out:
        print_json(result.to_json())
    else:
        info(
            f"restored {result.path} from {result.source}; "
            + (f"the previous file is kept as {result.kept}; " if result.kept else "")
            + result.verified
        )


def vacuum(
    ctx: typer.Context,
    full: Annotated[
        bool,
        typer.Option("--full", help="PostgreSQL: VACUUM FULL (locks each table while it runs)."),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Give the space of deleted rows back to the disk (SQLite VACUUM; PostgreSQL VACUUM)."""
    from flowcli.maintenance.space import vacuum as run_vacuum
    from flowcli.render.json_output import print_json
    from flowcli.render.maintenance import human_bytes
    from flowcli.render.messages import info

    result = run_vacuum(open_db(ctx), full=full)
    if json_out:
        print_json(result.to_json())
    else:
        data = result.to_json()
        info(
            f"{result.database}: {human_bytes(result.bytes_before)} → "
            f"{human_bytes(result.bytes_after)} ({human_bytes(data['freed_bytes'])} freed; "
            f"{result.detail})"
        )


def size(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Bytes and rows per table, free space, and bytes per session and per step."""
    from flowcli.maintenance.space import database_size
    from flowcli.render.json_output import print_json
    from flowcli.render.maintenance import size_report

    data = database_size(open_db(ctx))
    if json_out:
        print_json(data)
    else:
        size_report(data)
