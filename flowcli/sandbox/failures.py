"""How a refusal or an error inside the sandbox becomes one short line for the user.

Never a traceback: the message names the expression or template and what went wrong.
Database errors raised while a lazy name loads are not the expression's fault and pass
through unchanged.
"""

from __future__ import annotations

from typing import Any

from flowcli.errors import ExpressionError, FlowcliError
from flowcli.sandbox.budget import Refused, type_name


def one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def checked_source(kind: str, source: Any, allowed_names: Any) -> frozenset[str]:
    """What compiling an expression or a template first checks of its arguments: the
    source is text and the allowed names a set; returns the names, frozen (a cache key)."""
    if not isinstance(source, str):
        raise ExpressionError(f"{kind} must be text, not {type_name(source)}")
    try:
        return frozenset(allowed_names)
    except TypeError as exc:
        raise ExpressionError(f"allowed names must be a set of strings ({exc})") from None


def label(kind: str, source: Any) -> str:
    text = source if isinstance(source, str) else repr(source)
    return f'{kind} "{one_line(text, 60)}"'


def describe(exc: BaseException) -> str:
    """One short line saying what went wrong, never a traceback."""
    if isinstance(exc, Refused):
        message = str(exc)
    elif isinstance(exc, FlowcliError):
        message = exc.message
    elif isinstance(exc, RecursionError):
        message = "nested too deeply"
    elif isinstance(exc, MemoryError):
        message = "ran out of memory"
    elif isinstance(exc, ZeroDivisionError):
        message = "division by zero"
    elif isinstance(exc, OverflowError):
        message = "number too large"
    elif isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else None
        message = f"key {one_line(repr(key), 60)} not found"
    elif isinstance(exc, IndexError):
        message = "index out of range"
    else:
        message = str(exc) or type(exc).__name__
    return one_line(message, 200)


def reraise_foreign(exc: BaseException) -> None:
    """Errors that are not the expression's fault pass through unchanged.

    A lazily loaded name (``last``, ``messages``) reads the database; a locked or
    damaged database is a database problem, not a failed condition, and must be
    reported as itself.
    """
    if isinstance(exc, FlowcliError) and not isinstance(exc, ExpressionError):
        raise exc
    if type(exc).__module__.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg"):
        raise exc
