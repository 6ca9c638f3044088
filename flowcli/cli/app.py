"""The root ``flowcli`` app: its global options; the commands load on demand (cli/lazy.py)."""

from typing import Annotated

import typer

from flowcli import __version__
from flowcli.cli.lazy import LazyCommandGroup
from flowcli.cli.params import bounded_float
from flowcli.cli.state import AppState

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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flowcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="SQLite file path or SQLAlchemy URL. Default: $FLOWCLI_DB, else ./flowcli.db.",
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
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print flowcli's version and exit.",
            callback=_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Run and debug multi-role dialogue sessions against SQLite or PostgreSQL."""
    ctx.obj = AppState(db_option=db, busy_timeout=busy_timeout, debug=debug)
    # Close pooled connections when the command ends, so nothing holds the file open.
    ctx.call_on_close(ctx.obj.close)
