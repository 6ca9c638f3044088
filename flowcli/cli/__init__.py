"""The command line: thin Typer adapters over flowcli's core functions.

Importing this package must stay cheap (``flowcli --help`` never imports SQLAlchemy
or Alembic), so command modules import core code inside their functions.
"""

from __future__ import annotations


def main() -> None:
    """Console-script entry point."""
    from flowcli.cli.app import app

    app(prog_name="flowcli")
