"""The root ``flowcli`` app: its global options; the commands load on demand (cli/lazy.py)."""

from typing import Annotated

import typer

from flowcli.cli.context import AppState
from flowcli.cli.conventions import print_version
from flowcli.cli.lazy import LazyCommandGroup
from flowcli.cli.params import bounded_float

# The commands themselves are listed in flowcli.cli.lazy.COMMANDS and built on demand.
app = typer.Typer(
    cls=LazyCommandGroup,
    name="flowcli",
    help="Run and debug multi-role dialogue sessions against SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="SQLite file path or SQLAlchemy URL. Default: $FLOWCLI_DB, else the config "
            "file's `database`, else ./flowcli.db.",
            show_default=False,
        ),
    ] = None,
    busy_timeout: Annotated[
        float,
        typer.Option(
            "--busy-timeout",
            help="Seconds to wait for another process's lock before giving up.",
            parser=bounded_float(0.0, "busy_timeout"),
            envvar="FLOWCLI_BUSY_TIMEOUT",
        ),
    ] = 5.0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No notes or progress on stderr (errors and warnings still show)."
        ),
    ] = False,
    no_pager: Annotated[
        bool,
        typer.Option(
            "--no-pager",
            help="Never page output. Default pager: $FLOWCLI_PAGER, the config file's "
            "`pager`, $PAGER, else `less -R`.",
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print flowcli's version and exit.",
            callback=print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Run and debug multi-role dialogue sessions against SQLite or PostgreSQL."""
    import os

    from flowcli.config import Config, load
    from flowcli.render.output import OutputSettings, configure, pager_command

    config = ctx.meta.get("flowcli.config")
    if not isinstance(config, Config):
        config = load()
    source = ctx.get_parameter_source("busy_timeout")
    from_flag = source is not None and source.name == "COMMANDLINE"
    config.flags = {"database": db, "busy_timeout": busy_timeout if from_flag else None}
    configure(
        OutputSettings(
            pager=None if no_pager else pager_command(config.file_value("pager")),
            width=config.value("width"),
            quiet=quiet,
        )
    )
    db_option = db
    if db_option is None and not os.environ.get("FLOWCLI_DB"):
        db_option = config.file_value("database")
    ctx.obj = AppState(db_option=db_option, busy_timeout=busy_timeout, debug=debug, config=config)
    # Close pooled connections when the command ends, so nothing holds the file open.
    ctx.call_on_close(ctx.obj.close)
