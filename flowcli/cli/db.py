"""``flowcli db …``: migrations (upgrade, downgrade, current, history, stamp), the doctor,
and keeping a database healthy (prune, restore-archive, backup, restore, vacuum, size)."""

import sys
from typing import Annotated

import typer

from flowcli.cli import db_maintenance
from flowcli.cli.context import examinable_db, open_db
from flowcli.cli.options import JsonOption, YesOption
from flowcli.errors import EXIT_FAILURE, EXIT_USAGE

app = typer.Typer(
    help="Create, migrate, inspect, back up and prune the database.", no_args_is_help=True
)


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


# --- keeping a database healthy for years (flowcli.cli.db_maintenance) -------------------
app.command("prune")(db_maintenance.prune)
app.command("restore-archive")(db_maintenance.restore_archive)
app.command("backup")(db_maintenance.backup)
app.command("restore")(db_maintenance.restore)
app.command("vacuum")(db_maintenance.vacuum)
app.command("size")(db_maintenance.size)
