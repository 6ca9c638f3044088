"""Turning driver errors into flowcli errors that name the real problem.

MRC showed users "this Session's transaction has been rolled back" for every failure
after the first. Here each database error is reported as itself: locked, read-only,
full, not a database, or a missing table with the command that repairs it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowcli.errors import (
    DatabaseBusyError,
    DatabaseError,
    FlowcliError,
    ReadOnlyDatabaseError,
    SchemaError,
    UsageError,
)

if TYPE_CHECKING:
    from flowcli.db.connection import Database

_MISSING_TABLE = re.compile(r"no such table: (\S+)")
_MISSING_COLUMN = re.compile(r"(?:no such column|has no column named):? (\S+)")
_PG_MISSING = re.compile(r'relation "([^"]+)" does not exist|column "([^"]+)".* does not exist')


SQLITE_MAX_INTEGER = 2**63 - 1
# Write-side I/O errors: SQLite reports EFBIG (a file-size limit) as these, not as FULL.
_WRITE_IOERRS = ("SQLITE_IOERR_WRITE", "SQLITE_IOERR_TRUNCATE", "SQLITE_IOERR_SHMSIZE")


def describe_db_error(
    exc: BaseException, where: str = "database", path: Path | None = None
) -> FlowcliError:
    """Map a SQLAlchemy / DBAPI exception to the flowcli error that explains it."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    low = text.lower()
    if isinstance(orig, OverflowError):
        # sqlite3 refuses to bind an int beyond 64 bits (e.g. `session show 99999…`).
        return UsageError(
            f"a number is too large for the database: SQLite integers are at most "
            f"{SQLITE_MAX_INTEGER} ({text})"
        )
    if getattr(orig, "sqlite_errorname", None) in _WRITE_IOERRS:
        why = _no_room_reason(path)
        if why is not None:
            return DatabaseError(
                f"{where}: no room to write ({why}); the transaction was rolled back, "
                "so nothing is half-written: make room, then run the command again"
            )
        return DatabaseError(
            f"{where}: disk I/O error while writing ({text}); the transaction was rolled "
            "back: check the disk, then run `flowcli db doctor`"
        )
    if "database is locked" in low or "database table is locked" in low or "lock timeout" in low:
        return DatabaseBusyError(
            f"{where} is locked by another process (waited past the busy timeout); "
            "try again, or raise --busy-timeout"
        )
    if "readonly database" in low or "read-only" in low or "read only" in low:
        return ReadOnlyDatabaseError(f"{where} is read-only: cannot write ({text})")
    if "disk is full" in low or "disk full" in low or "no space" in low or "too large" in low:
        return DatabaseError(f"{where}: no room to write (disk or file-size limit full): {text}")
    if "file is not a database" in low or "file is encrypted" in low:
        return DatabaseError(f"{where} is not a SQLite database (or it is corrupt): {text}")
    if "malformed" in low or "disk i/o error" in low or "corrupt" in low:
        return DatabaseError(f"{where} is damaged ({text}); run `flowcli db doctor` to examine it")
    if "unable to open database" in low:
        return DatabaseError(f"cannot open {where}: {text}")
    m = _MISSING_TABLE.search(text)
    if m:
        return SchemaError(
            f"table {m.group(1)} is missing from {where}; run `flowcli db doctor --fix`"
        )
    m = _MISSING_COLUMN.search(text)
    if m:
        return SchemaError(
            f"column {m.group(1)} is missing from {where}; run `flowcli db doctor --fix`"
        )
    m = _PG_MISSING.search(text)
    if m:
        name = m.group(1) or m.group(2)
        return SchemaError(f"{name} is missing from {where}; run `flowcli db doctor --fix`")
    if "could not connect" in low or "connection refused" in low or "connection failed" in low:
        return DatabaseError(f"cannot connect to {where}: {text}")
    return DatabaseError(f"{where} error: {text}")


class translated:  # noqa: N801 - used as a function: ``with translated(db):``
    """Re-raise SQLAlchemy and sqlite3 errors as flowcli errors.

    A plain context manager rather than a generator: the step's hot path enters one per
    step, and the database's name is worked out only when an error is being described.
    """

    __slots__ = ("db",)

    def __init__(self, db: Database | None = None) -> None:
        self.db = db

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, FlowcliError):
            return  # nothing raised, or not a database error: it goes on as it is
        import sqlite3

        db = self.db
        where = f"database {db.target.display}" if db is not None else "database"
        path = db.target.path if db is not None else None
        if isinstance(exc, sqlite3.Error | OverflowError) or _is_sqlalchemy_error(exc):
            raise describe_db_error(exc, where, path) from exc
        # psycopg's errors, met on the DBAPI hot path (imported only when installed).
        if type(exc).__module__.startswith("psycopg"):
            raise describe_db_error(exc, where) from exc


def _is_sqlalchemy_error(exc: BaseException) -> bool:
    # Only a process that imported SQLAlchemy can meet its errors: the commands that run on
    # the bare sqlite3 driver do not import it just to find that out.
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and isinstance(exc, errors.SQLAlchemyError)


def _no_room_reason(path: Path | None) -> str | None:
    """Why a failed write means "no room": a file-size limit on this process, a full disk."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            return f"this process may not write files larger than {soft:,} bytes (ulimit -f)"
    except (ImportError, OSError, ValueError):
        pass
    if path is not None:
        try:
            st = os.statvfs(path.parent)
        except OSError:
            return None
        if st.f_bavail * st.f_frsize < 1024 * 1024:
            return f"the disk holding {path.parent} is full"
    return None
