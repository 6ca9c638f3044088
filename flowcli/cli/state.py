"""Options every command shares (``--db``, ``--busy-timeout``, ``--debug``) and the
one Database object built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from flowcli.db.connection import Database


@dataclass
class AppState:
    db_option: str | None = None
    busy_timeout: float = 5.0
    debug: bool = False
    config: Any = None  # flowcli.config.Config: the files read for this command
    _db: Database | None = field(default=None, repr=False)

    def database(self) -> Database:
        if self._db is None:
            from flowcli.db.connection import Database, resolve_target

            self._db = Database(resolve_target(self.db_option), busy_timeout=self.busy_timeout)
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


def open_db(ctx: typer.Context, *, require_schema: bool = True) -> Database:
    """The database for this command, checked by the schema guard unless told not to."""
    db = state(ctx).database()
    if require_schema:
        from flowcli.db.schema import require_schema as guard

        guard(db)
    return db
