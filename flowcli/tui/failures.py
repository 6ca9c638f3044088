"""How the TUI names an error raised in a worker thread, on one line (never a traceback).

Apart from app.py so that the screens, which run those workers, need not import the app.
"""

from __future__ import annotations


def describe_failure(exc: BaseException) -> str:
    """One line for an error in a worker: flowcli's own message, a database error named
    as itself, or the unexpected exception's type and text."""
    import sqlite3

    from flowcli.errors import FlowcliError

    if isinstance(exc, FlowcliError):
        return exc.message
    if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith(("sqlalchemy", "psycopg")):
        from flowcli.db.failures import describe_db_error

        return describe_db_error(exc).message
    return f"unexpected {type(exc).__name__}: {exc}"
