"""The single error boundary: every exception a command raises ends here.

A FlowcliError becomes one red ``Error: …`` line on stderr and its exit code; a
database driver error is translated first; Ctrl-C exits 130; anything unexpected
prints a short line and the hint to re-run with ``--debug`` (which shows the traceback).
A reader that goes away (``| head -1``, quitting the pager) ends the command quietly
with exit 0, as ``cat`` does.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from flowcli.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FlowcliError,
    raised_by_interrupt,
)


def _debug_enabled(ctx: typer.Context) -> bool:
    obj = ctx.find_root().obj
    return bool(getattr(obj, "debug", False)) or "--debug" in sys.argv


def print_error(message: str) -> None:
    from flowcli.render.messages import err_console

    # One line, no markup interpretation of user text.
    err_console().print(f"[bold red]Error:[/bold red] {_escape(message)}", soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    from flowcli.render.safe_text import one_line

    # Control characters and bidi overrides from user input or a server's reply would
    # break the one line apart or rewrite it on a terminal: shown, never obeyed.
    return escape(one_line(" ".join(str(text).split("\n"))))


def confirm_or_require_yes(question: str, *, yes: bool, action: str) -> None:
    """Ask on a terminal; without one, refuse unless ``--yes`` was given (never print a
    prompt nobody can answer and then ``Aborted!``)."""
    from flowcli.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{action} needs confirmation and there is no terminal to ask on: pass --yes"
        )
    from flowcli.render.output import before_prompt

    before_prompt()
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(EXIT_FAILURE)


class FlowcliGroup(TyperGroup):
    """Root group whose ``invoke`` is the one place errors turn into exit codes."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        from flowcli.render.output import finish, silence_stdout

        try:
            try:
                return super().invoke(ctx)
            finally:
                finish()  # the pager shows the rest; wait for the reader to quit it
        except BrokenPipeError:
            silence_stdout()
            raise typer.Exit(EXIT_OK) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except FlowcliError as exc:
            if _debug_enabled(ctx):
                raise
            if raised_by_interrupt(exc):
                print_error("interrupted")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            print_error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            if _debug_enabled(ctx):
                raise
            if raised_by_interrupt(exc):
                print_error("interrupted")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            translated = _translate_driver_error(exc)
            if translated is not None:
                print_error(translated.message)
                raise typer.Exit(translated.exit_code) from None
            print_error(
                f"unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback)"
            )
            raise typer.Exit(EXIT_FAILURE) from None


_DRIVERS = {"psycopg2", "pymysql", "MySQLdb", "asyncpg", "pg8000", "cx_Oracle", "oracledb"}


def _translate_driver_error(exc: BaseException) -> FlowcliError | None:
    import sqlite3

    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("psycopg"):
        from flowcli.errors import DatabaseError

        return DatabaseError(
            "PostgreSQL needs the psycopg driver, which is not installed: "
            "pip install 'flowcli[postgres]'"
        )
    if isinstance(exc, ModuleNotFoundError) and exc.name in _DRIVERS:
        from flowcli.errors import DatabaseError

        return DatabaseError(
            f"the database driver {exc.name!r} is not installed; flowcli supports SQLite "
            "and PostgreSQL (pip install 'flowcli[postgres]')"
        )
    if isinstance(exc, ValueError) and "embedded null" in str(exc):
        # A NUL byte in a path or an argument: no file name or C string can hold one.
        from flowcli.errors import UsageError

        return UsageError("an argument contains a NUL byte (\\x00), which no file name can hold")
    if isinstance(exc, OSError) and exc.errno is not None:
        # A file the command reads or writes: the OS's reason, named, on one line.
        from flowcli.errors import describe_os_error

        return FlowcliError(describe_os_error(exc))
    mod = type(exc).__module__
    # OverflowError: sqlite3 cannot bind an integer beyond 64 bits (a huge id argument).
    if isinstance(exc, sqlite3.Error | OverflowError) or mod.startswith(("sqlalchemy", "psycopg")):
        from flowcli.db.failures import describe_db_error

        return describe_db_error(exc)
    return None
