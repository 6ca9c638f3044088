"""Running flowcli's Alembic migrations from code (the ``db`` commands call these).

The Config is built here, never from the working directory, and points at the
migrations shipped in the wheel (``flowcli/migrations``) or, in a source checkout,
at the top-level ``migrations/`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowcli.db.connection import Database, sqlite_file_state
from flowcli.db.failures import translated
from flowcli.db.inspection import read_revisions
from flowcli.db.revisions import VERSION_TABLE
from flowcli.errors import FlowcliError, SchemaError

if TYPE_CHECKING:
    from alembic.config import Config


def migrations_dir() -> Path:
    """The folder holding env.py and versions/, wherever flowcli is installed."""
    import flowcli

    pkg = Path(flowcli.__file__).resolve().parent
    for candidate in (pkg / "migrations", pkg.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FlowcliError("flowcli's migrations are missing from this installation")


def alembic_config(connection: Any = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["connection"] = connection
    return cfg


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    return str(_script().get_current_head())


@dataclass
class RevisionInfo:
    """One migration revision, as `db history` lists it."""

    revision: str
    down_revision: str | None
    doc: str
    is_head: bool
    is_current: bool


def history(db: Database | None = None) -> list[RevisionInfo]:
    """All revisions, newest first, marking which one the database is at."""
    current = current_revision(db) if db is not None else None
    script = _script()
    heads = set(script.get_heads())
    out = []
    for rev in script.walk_revisions():
        out.append(
            RevisionInfo(
                revision=rev.revision,
                down_revision=rev.down_revision if isinstance(rev.down_revision, str) else None,
                doc=(rev.doc or "").strip(),
                is_head=rev.revision in heads,
                is_current=rev.revision == current,
            )
        )
    return out


def current_revision(db: Database) -> str | None:
    _check_openable(db)
    with db.read() as conn:
        revisions = read_revisions(conn)
    if not revisions:
        return None
    if len(revisions) > 1:
        raise SchemaError(
            f"{VERSION_TABLE} has {len(revisions)} rows ({', '.join(revisions)}); "
            "run `flowcli db doctor`"
        )
    return revisions[0]


def _check_openable(db: Database) -> None:
    if db.is_sqlite and db.target.path is not None:
        sqlite_file_state(db.target.path)


def check_revision(rev: str) -> None:
    """Raise SchemaError for a revision flowcli does not have (before anything is asked)."""
    _known(rev)


def drop_version_table(db: Database) -> None:
    """Drop flowcli's (empty) version table: the last of flowcli's additions to a
    database another application owns, once it is downgraded to base."""
    from sqlalchemy import text

    with db.write() as conn:
        remaining = read_revisions(conn)
        if remaining:
            raise SchemaError(f"{VERSION_TABLE} still records {', '.join(remaining)}")
        if remaining is not None:
            conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    db.schema_checked = False
    db._owner = None


def _known(rev: str) -> None:
    if rev in ("head", "base", "heads") or rev.endswith(("+1", "-1")):
        return
    from alembic.util import CommandError

    try:
        if _script().get_revision(rev) is None:
            raise SchemaError(f"unknown revision {rev!r}; see `flowcli db history`")
    except CommandError as exc:
        raise SchemaError(f"unknown revision {rev!r}: {exc}") from None


def _run(db: Database, fn_name: str, rev: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    _check_openable(db)
    _known(rev)

    with translated(db), db.engine.connect() as conn:
        sqlite_fk_off = conn.dialect.name == "sqlite"
        if sqlite_fk_off:
            # A batch rebuild drops and re-creates a table; with foreign keys on, that
            # DROP would cascade-delete the children's rows. The pragma only takes
            # effect outside a transaction, hence the raw driver connection.
            _driver(conn).execute("PRAGMA foreign_keys = OFF")
        try:
            cfg = alembic_config(conn)
            try:
                getattr(command, fn_name)(cfg, rev)
            except CommandError as exc:
                raise SchemaError(f"{fn_name} to {rev} failed: {exc}") from None
            conn.commit()
        finally:
            if sqlite_fk_off:
                conn.rollback()
                _driver(conn).execute("PRAGMA foreign_keys = ON")
    db.schema_checked = False
    db._owner = None


def _driver(conn: Any) -> Any:
    """The DBAPI connection under a SQLAlchemy connection (for pragmas outside BEGIN)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver


def drop_added_columns(table: str, columns: list[str]) -> None:
    """Drop columns flowcli added, inside a migration, without rebuilding the table.

    A batch rebuild would drop and re-create the whole table, which on an adopted
    database is MRC's (its DDL, its indexes). SQLite 3.35+ drops a plain column in place.
    """
    import sqlite3

    from alembic import op

    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35, 0):
        with op.batch_alter_table(table) as batch_op:
            for name in columns:
                batch_op.drop_column(name)
        return
    for name in columns:
        if bind.dialect.name == "sqlite":
            op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{name}"')
        else:
            op.drop_column(table, name)


def upgrade(db: Database, revision: str = "head") -> None:
    _run(db, "upgrade", revision)


def downgrade(db: Database, revision: str) -> None:
    _run(db, "downgrade", revision)


def stamp(db: Database, revision: str) -> None:
    _run(db, "stamp", revision)
