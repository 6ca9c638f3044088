"""What one invocation of flowcli carries: the options every command shares (``--db``,
``--busy-timeout``, ``--debug``), the config files read, and the one Database built from
them (typer's context object)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from flowcli.db.connection import Database


class AppState:
    """What the root command resolved for the command it runs (database, options).

    A plain class, not a dataclass: every command creates one, and a dataclass costs
    its creation at import (docs/architecture.md, "What a one-step command loads")."""

    def __init__(
        self,
        db_option: str | None = None,
        busy_timeout: float = 5.0,
        debug: bool = False,
        config: Any = None,
    ) -> None:
        self.db_option = db_option
        self.busy_timeout = busy_timeout
        self.debug = debug
        self.config = config  # flowcli.config.Config: the files read for this command
        self.durability: str | None = None  # --durability of a command that writes steps
        self._db: Database | None = None

    def database(self) -> Database:
        if self._db is None:
            from flowcli.db.connection import Database, resolve_target

            self._db = Database(resolve_target(self.db_option), busy_timeout=self.busy_timeout)
            if self.durability is not None:
                self._db.durability = self.durability
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        obj = AppState()
        ctx.find_root().obj = obj
    return obj


def open_db(
    ctx: typer.Context,
    *,
    require_schema: bool = True,
    create: bool = False,
    durability: str | None = None,
) -> Database:
    """The database for this command, checked by the schema guard unless told not to.

    ``create=True`` for the commands that bring something new into being (``flow
    import``, ``role add``, ``session create``, ``demo``, ``worker``; ``db upgrade``
    has its own path): they create a missing or empty database. Every other command
    works on rows that must already exist, so a missing database (a mistyped ``--db``)
    is an error saying how to create one, and nothing is created.

    ``durability`` (the commands that write steps): the synchronous level of every
    connection; it is set before the first connection opens.
    """
    app_state = state(ctx)
    if durability is not None:
        app_state.durability = durability
        if app_state._db is not None and app_state._db.durability != durability:
            app_state._db.dispose()
            app_state._db.durability = durability
    db = app_state.database()
    if require_schema:
        from flowcli.db.schema import require_schema as guard

        guard(db, create=create)
    return db


def existing_db(ctx: typer.Context) -> Database | None:
    """The database, schema-checked, or None when it does not exist yet (no file, an empty
    one, no tables): for a command that can do its work without one (``flow validate``)."""
    from flowcli.errors import DatabaseMissingError

    try:
        return open_db(ctx)
    except DatabaseMissingError:
        return None


def examinable_db(ctx: typer.Context) -> Database:
    """For the doctor: the database without the schema guard. A ``--db`` that names no
    usable file (a FIFO, a device, a directory…) is "could not be examined" (exit 2)."""
    from flowcli.errors import DatabaseError, DatabaseUnavailableError

    try:
        return open_db(ctx, require_schema=False)
    except DatabaseUnavailableError:
        raise
    except DatabaseError as exc:
        raise DatabaseUnavailableError(exc.message) from None
