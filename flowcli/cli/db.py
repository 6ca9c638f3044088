"""``flowcli db …``: migrations (upgrade, downgrade, current, history, stamp)."""

from typing import Annotated

import typer

from flowcli.cli.state import examinable_db, open_db

app = typer.Typer(help="Create, migrate and inspect the database schema.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database to REVISION (default: head), creating it if needed."""
    from flowcli.db import migrate
    from flowcli.render import info

    db = open_db(ctx, require_schema=False)
    migrate.upgrade(db, revision)
    info(f"{db.target.display} is at {migrate.current_revision(db)}")


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base'.")],
) -> None:
    """Downgrade the database to REVISION ('base' removes flowcli's tables)."""
    from flowcli.db import migrate
    from flowcli.render import info

    db = open_db(ctx, require_schema=False)
    migrate.downgrade(db, revision)
    info(f"{db.target.display} is at {migrate.current_revision(db) or 'base'}")


@app.command()
def current(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Print the revision the database is at."""
    from flowcli.db import migrate
    from flowcli.db.schema import HEAD_REVISION, require_existing
    from flowcli.render import print_json

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
    from flowcli.render import print_json, revision_table

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
) -> None:
    """Record REVISION as current without running migrations."""
    from flowcli.db import migrate
    from flowcli.render import info

    db = open_db(ctx, require_schema=False)
    migrate.stamp(db, revision)
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
    from flowcli.doctor.checks import list_checks as all_checks
    from flowcli.doctor.examine import DoctorOptions, run_doctor
    from flowcli.errors import DoctorError
    from flowcli.render import print_json, warn
    from flowcli.render.doctor import confirm_plan, doctor_checks, doctor_report

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
        if yes:
            return True
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
        doctor_report(report, plan_sql=dry_run)
        if dry_run and report.fixable(with_sessions=fix_sessions):
            from flowcli.render import info

            info("--dry-run: nothing was changed")
    if not report.examinable:
        raise typer.Exit(2)
    if not report.ok:
        raise typer.Exit(1)
