"""``flowcli config …``: the effective settings with their sources, and a starter file."""

from pathlib import Path
from typing import Annotated

import typer

from flowcli.cli.options import JsonOption

app = typer.Typer(
    help="Show the effective settings and where each comes from; write a starter file.",
    no_args_is_help=True,
)


@app.command()
def show(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Print every setting's effective value and its source (flag, environment, project
    file, user file or default). The API key is masked."""
    from flowcli.cli.context import state
    from flowcli.render.config import config_table
    from flowcli.render.json_output import print_json

    config = state(ctx).config
    if config is None:
        from flowcli.config import load

        config = load()
    from flowcli.maintenance.retention import retention_policy

    rows = config.shown()
    policy = retention_policy()
    # The retention policy `db prune --policy` applies ([retention]; docs/maintenance.md).
    for key, value in policy.to_mapping().items():
        if key != "source":
            rows.append(
                {
                    "key": f"retention.{key}",
                    "value": value,
                    "source": policy.source if value is not None else "default (none)",
                    "help": "applied by `flowcli db prune --policy`",
                }
            )
    files = [{"kind": f.kind, "path": str(f.path)} for f in config.files]
    if json_out:
        print_json({"settings": rows, "files": files})
    else:
        config_table(rows, files)


@app.command()
def init(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Where to write it (default: ./flowcli.toml; the user file is "
            "~/.config/flowcli/config.toml).",
            show_default=False,
        ),
    ] = None,
    user: Annotated[
        bool, typer.Option("--user", help="Write the user file instead of ./flowcli.toml.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a commented starter config file (refuses to replace one without --force)."""
    from flowcli.config import PROJECT_FILE, user_file, write_starter
    from flowcli.errors import UsageError
    from flowcli.render.messages import info

    if path is not None and user:
        raise UsageError("give a PATH or --user, not both")
    target = user_file() if user else (path or Path(PROJECT_FILE))
    written = write_starter(target, force=force)
    typer.echo(str(written))
    info(f"wrote {written}; every line is commented out: uncomment what you want to set")
