"""The root ``flowcli`` app: global options, and the command groups assembled."""

from typing import Annotated

import typer

from flowcli import __version__
from flowcli.cli import db as db_cmds
from flowcli.cli import flow as flow_cmds
from flowcli.cli import logs as logs_cmds
from flowcli.cli import role as role_cmds
from flowcli.cli import run as run_cmds
from flowcli.cli import session as session_cmds
from flowcli.cli import worker as worker_cmds
from flowcli.cli.boundary import FlowcliGroup
from flowcli.cli.state import AppState

app = typer.Typer(
    cls=FlowcliGroup,
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
            min=0.0,
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


app.add_typer(db_cmds.app, name="db")
app.add_typer(flow_cmds.app, name="flow")
app.add_typer(role_cmds.app, name="role")
app.add_typer(session_cmds.app, name="session")
app.add_typer(logs_cmds.app, name="logs")
app.command("log")(logs_cmds.show)
app.command("run-next")(run_cmds.run_next)
app.command("auto")(run_cmds.auto)
app.command("explain")(run_cmds.explain)
app.command("demo")(run_cmds.demo)
app.command("worker")(worker_cmds.worker)
