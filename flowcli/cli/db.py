"""``flowcli db …``: migrations (upgrade, downgrade, current, history, stamp), the doctor,
and keeping a database healthy (prune, restore-archive, backup, restore, vacuum, size)."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from flowcli.cli.context import examinable_db, open_db
from flowcli.cli.options import MAX_ID, ArchiveOpt, NoArchiveOpt, YesOption
from flowcli.errors import EXIT_FAILURE, EXIT_USAGE

app = typer.Typer(
    help="Create, migrate, inspect, back up and prune the database.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database to REVISION (default: head), creating it if needed."""
    from flowcli.db import migrate
    from flowcli.render.messages import info

    db = open_db(ctx, require_schema=False)
    _refuse_unadopted(db)
    migrate.upgrade(db, revision)
    info(f"{db.target.display} is at {migrate.current_revision(db)}")


def _refuse_unadopted(db: object) -> None:
    """A database with tables but no flowcli version table (MRC's own) is adopted by the
    doctor, which backs it up first; upgrading it would fail on a table that exists."""
    from flowcli.db.inspection import existing_tables, read_revisions
    from flowcli.db.schema import database_exists
    from flowcli.errors import SchemaError

    if not database_exists(db):  # type: ignore[arg-type]
        return
    with db.read() as conn:  # type: ignore[attr-defined]
        if read_revisions(conn) is not None:
            return
        tables = existing_tables(conn)
    if tables:
        raise SchemaError(
            f"{db.target.display} already has {len(tables)} tables but no flowcli version "  # type: ignore[attr-defined]
            "table (another application's database, such as MRC's): adopt it with "
            "`flowcli db doctor --fix`, which backs it up first"
        )


NoBackupOption = Annotated[
    bool, typer.Option("--no-backup", help="Skip the verified backup first (not advised).")
]


def _confirm_schema_change(plan: object, yes: bool) -> None:
    """Show what the change removes; ask on a terminal, else insist on --yes."""
    from flowcli.cli.boundary import confirm_or_require_yes
    from flowcli.doctor.destructive import SchemaChangePlan
    from flowcli.render.messages import info

    assert isinstance(plan, SchemaChangePlan)
    if yes or not plan.needs_confirmation:
        return
    if sys.stdin.isatty():
        info(f"db {plan.command} {plan.target} on {plan.database} (owner: {plan.owner}) removes:")
        for item in plan.removes:
            info(f"  - {item}")
        for item in plan.keeps:
            info(f"  keeps {item}")
    confirm_or_require_yes(
        "Go ahead (a verified backup is made first)?",
        yes=yes,
        action=f"db {plan.command} {plan.target} (it removes {'; '.join(plan.removes)})",
    )


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base'.")],
    yes: YesOption = False,
    no_backup: NoBackupOption = False,
) -> None:
    """Downgrade the database to REVISION, after a verified backup.

    On flowcli's own database 'base' removes flowcli's tables with their rows. On a
    database MRC owns only flowcli's additions go: MRC's tables and rows stay.
    """
    from flowcli.doctor.destructive import downgrade_safely, plan_downgrade
    from flowcli.render.messages import info, warn

    db = open_db(ctx, require_schema=False)
    plan = plan_downgrade(db, revision)
    _confirm_schema_change(plan, yes)
    if no_backup:
        warn("downgrading without a backup (--no-backup)")
    saved = downgrade_safely(db, plan, backup=not no_backup)
    if saved:
        info(f"backup: {saved}")
    from flowcli.db import migrate

    info(f"{db.target.display} is at {migrate.current_revision(db) or 'base'}")


@app.command()
def current(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Print the revision the database is at."""
    from flowcli.db import migrate
    from flowcli.db.revisions import HEAD_REVISION
    from flowcli.db.schema import require_existing
    from flowcli.render.json_output import print_json

    db = open_db(ctx, require_schema=False)
    require_existing(db)
    rev = migrate.current_revision(db)
    if json_out:
        print_json(
            {
                "database": db.target.display,
                "current": rev,
                "head": HEAD_REVISION,
                "is_head": rev == HEAD_REVISION,
            }
        )
        return
    typer.echo(f"{rev} (head)" if rev == HEAD_REVISION else (rev or "none (unversioned)"))


@app.command()
def history(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List every migration, newest first, marking head and current."""
    from dataclasses import asdict

    from flowcli.db import migrate
    from flowcli.render.json_output import print_json
    from flowcli.render.migrations import revision_table

    db = open_db(ctx, require_schema=False)
    from flowcli.db.schema import database_exists

    revisions = migrate.history(db if database_exists(db) else None)
    if json_out:
        print_json([asdict(r) for r in revisions])
        return
    revision_table(revisions)


@app.command()
def stamp(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Revision to record, without migrating.")],
    yes: YesOption = False,
    no_backup: NoBackupOption = False,
) -> None:
    """Record REVISION as current without running migrations.

    Changing an existing record asks first (or needs --yes) and makes a verified backup.
    """
    from flowcli.db import migrate
    from flowcli.doctor.destructive import plan_stamp, stamp_safely
    from flowcli.render.messages import info

    db = open_db(ctx, require_schema=False)
    plan = plan_stamp(db, revision)
    _confirm_schema_change(plan, yes)
    saved = stamp_safely(db, plan, backup=not no_backup)
    if saved:
        info(f"backup: {saved}")
    info(f"{db.target.display} stamped at {migrate.current_revision(db)}")


@app.command()
def doctor(
    ctx: typer.Context,
    fix: Annotated[
        bool, typer.Option("--fix", help="Back up, then apply the safe schema repairs.")
    ] = False,
    fix_sessions: Annotated[
        bool, typer.Option("--fix-sessions", help="Also repair stuck and abandoned sessions.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Repair without asking.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the repair plan and its SQL; change nothing.")
    ] = False,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Repair without a backup first (not advised).")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Run integrity_check instead of quick_check.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Count warnings as errors.")] = False,
    list_checks: Annotated[
        bool, typer.Option("--list-checks", help="List the checks and exit.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Compare the database with flowcli's models and repair drift safely.

    Exit 0 when healthy (warnings allowed), 1 when errors remain, 2 when the database
    could not be examined (unreadable, not SQLite, locked past the timeout).
    """
    from flowcli.doctor.examine import DoctorOptions, run_doctor
    from flowcli.doctor.examine import list_checks as all_checks
    from flowcli.errors import DoctorError
    from flowcli.render.doctor import confirm_plan, doctor_checks, doctor_report
    from flowcli.render.json_output import print_json
    from flowcli.render.messages import warn

    if list_checks:
        checks = all_checks()
        if json_out:
            print_json(checks)
        else:
            doctor_checks(checks)
        return
    state_ = ctx.find_root().obj
    db = examinable_db(ctx)
    options = DoctorOptions(
        full=full,
        strict=strict,
        fix=fix or fix_sessions,
        fix_sessions=fix_sessions,
        dry_run=dry_run,
        backup=not no_backup,
        busy_timeout=state_.busy_timeout,
    )
    if options.fix and not options.backup and not dry_run:
        warn("repairing without a backup (--no-backup)")

    def confirm(report: object) -> bool:
        import sys

        from flowcli.errors import UsageError

        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                "db doctor --fix needs confirmation and there is no terminal to ask on: "
                "pass --yes (or --dry-run to see the plan)"
            )
        # What was found first, then what will be done, then the question.
        confirm_plan(report, fix_sessions)
        return typer.confirm("Apply these repairs?", default=False, err=True)

    try:
        report = run_doctor(db.target, options, confirm=confirm)
    except DoctorError as exc:
        report = exc.data["report"]
        if json_out:
            print_json(report.to_json())
        else:
            doctor_report(report)
        raise
    if json_out:
        data = report.to_json()
        if dry_run:
            data["plan"] = [f.to_json() for f in report.fixable(with_sessions=fix_sessions)]
        print_json(data)
    else:
        doctor_report(report, plan_sql=dry_run, with_sessions=fix_sessions)
        if dry_run and report.fixable(with_sessions=fix_sessions):
            from flowcli.render.messages import info

            info("--dry-run: nothing was changed")
    if not report.examinable:
        raise typer.Exit(EXIT_USAGE)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


# --- keeping a database healthy for years: prune, archives, backup, restore, space ------


def _confirm_destructive(question: str, what: str, yes: bool) -> None:
    """Ask on a terminal; anywhere else a destructive command needs --yes."""
    from flowcli.cli.boundary import confirm_or_require_yes

    confirm_or_require_yes(question, yes=yes, action=what)


@app.command()
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
    import sys

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


@app.command("restore-archive")
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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
