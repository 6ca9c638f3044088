"""``flowcli db …``: migrations (upgrade, downgrade, current, history, stamp)."""

from __future__ import annotations

from typing import Annotated

import typer

from flowcli.cli.state import open_db

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
    from flowcli.db.schema import HEAD_REVISION, create_if_new
    from flowcli.render import print_json

    db = open_db(ctx, require_schema=False)
    create_if_new(db)
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
