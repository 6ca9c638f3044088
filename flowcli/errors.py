"""The one error tree of flowcli.

Core code raises these; the CLI's single error boundary (flowcli.cli.boundary) turns
them into one ``Error: …`` line on stderr and the error's exit code.
"""

from __future__ import annotations

from typing import Any

# Every exit code flowcli uses, in one table.
EXIT_OK = 0
EXIT_FAILURE = 1  # an expected failure: a FlowcliError, or errors the doctor left
EXIT_USAGE = 2  # a wrong command line, or a database that could not be examined
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: 128 + SIGINT, as shells report it


class FlowcliError(Exception):
    """Base of every expected failure. ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return self.message


class UsageError(FlowcliError):
    """The command line itself is wrong (bad option value, conflicting flags)."""

    exit_code = EXIT_USAGE


class NotFoundError(FlowcliError):
    """A session, flow, role or log id that does not exist."""


class DatabaseError(FlowcliError):
    """The database cannot be opened or used: not SQLite, unreadable, locked, full."""


class DatabaseUnavailableError(DatabaseError):
    """The database could not even be examined (used by the doctor's exit code 2)."""

    exit_code = EXIT_USAGE


class DatabaseMissingError(DatabaseError):
    """A command that only reads met a database that does not exist yet (no file, an empty
    file, or a PostgreSQL database without tables); it says how to create one."""


class DatabaseBusyError(DatabaseError):
    """Another process held the lock for longer than the busy timeout."""


class ReadOnlyDatabaseError(DatabaseError):
    """A write was attempted on a database that is read-only for this process."""


class SchemaError(DatabaseError):
    """The schema is not what flowcli needs: missing table or column, behind head."""


class FlowValidationError(FlowcliError):
    """A flow file is invalid. ``problems`` holds every message, one per finding."""

    def __init__(self, problems: list[str], source: str = "flow") -> None:
        self.problems = problems
        first = problems[0] if problems else "invalid flow"
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(first + more, problems=problems, source=source)


class ExpressionError(FlowcliError):
    """An expression or template is invalid or was refused by the sandbox."""


class SessionStateError(FlowcliError):
    """The session is in a state that does not allow the requested action."""


class SessionBusyError(FlowcliError):
    """Another process is running a step of this session right now."""


class BatchBusyError(FlowcliError):
    """Another live process is running this batch (``flowcli batch resume``)."""


class StepFailedError(FlowcliError):
    """A step failed for good (its retries ran out); the session is now failed."""


class ResponderError(FlowcliError):
    """A responder could not produce a message. ``transient`` errors are retried."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
        **data: Any,
    ) -> None:
        super().__init__(message, **data)
        self.transient = transient
        self.retry_after = retry_after


class DoctorError(FlowcliError):
    """The doctor found errors, or a repair did not resolve what it targeted."""


class ConfigError(FlowcliError):
    """A configuration file (or a value from the environment) is wrong: names the file
    and the key."""

    exit_code = EXIT_USAGE


class ArchiveError(FlowcliError):
    """An archive could not be written, read back, verified or restored."""


class MissingExtraError(FlowcliError):
    """A command needs an optional dependency that is not installed (its extra says which)."""


def describe_os_error(exc: OSError, subject: str | None = None) -> str:
    """One line naming an operating-system error: what failed, its reason, its errno name.

    ``[Errno 36] File name too long: '/a/b'`` becomes ``/a/b: File name too long
    (ENAMETOOLONG)``, so the user sees the problem, never "unexpected OSError".
    """
    import errno

    reason = exc.strerror or str(exc) or type(exc).__name__
    code = errno.errorcode.get(exc.errno or -1)
    if code:
        reason += f" ({code})"
    where = subject if subject is not None else exc.filename
    return f"{where}: {reason}" if where is not None else reason


def raised_by_interrupt(exc: BaseException | None) -> bool:
    """True for Ctrl-C, and for an error raised while Ctrl-C was being handled.

    A KeyboardInterrupt that lands inside a database call can make the driver's cleanup
    fail (psycopg cancels the query, then the rollback on the way out meets a connection
    in a bad state); that second error is not what the user needs to hear: they asked to
    stop.
    """
    for _ in range(32):  # a bounded walk: a context chain can be long, never a cycle here
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__context__
    return False
