"""The schema guard: is this database at flowcli's head, with every table and column?

``require_schema`` is the guard every command that touches flowcli's tables passes:
for a command that adds something new it creates a missing or empty database at head;
any other command refuses one (a mistyped ``--db`` must not leave a new file behind).
Otherwise it refuses, with one line naming the fix, a database that is unversioned,
behind, ahead, or missing a table or column flowcli writes. Alembic is imported only
when a database is actually created (``upgrade``), never on the hot path.

The guard decides with flowcli.db.schema_state's classifier on plain facts
(``SchemaFacts``: tables, their columns, the version rows). On a SQLite file they are
gathered with the bare sqlite3 driver (sqlite_master and ``PRAGMA table_info``), so a
one-step command never imports SQLAlchemy to be checked; elsewhere through SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from flowcli.db.connection import Database, sqlite_file_state
from flowcli.db.inspection import existing_columns, existing_tables, read_revisions
from flowcli.db.revisions import HEAD_REVISION, VERSION_TABLE
from flowcli.db.schema_state import classify_revisions
from flowcli.db.schema_state import missing_objects as classify_missing
from flowcli.errors import DatabaseMissingError, SchemaError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class SchemaFacts(NamedTuple):
    """What the guard looks at: the tables, the columns of the models' tables that exist,
    and the rows of flowcli's version table (None when it does not exist)."""

    tables: frozenset[str]
    columns: dict[str, frozenset[str]]
    revisions: list[str] | None

    def missing(self) -> list[str]:
        """Tables and columns of the models the database lacks, as ``table[.column]``."""
        from flowcli.db.plain_schema import MODEL_COLUMNS

        return [str(found) for found in classify_missing(MODEL_COLUMNS, self.columns)]


def sqlite_schema_facts(cur: Any) -> SchemaFacts:
    """SchemaFacts read on a bare sqlite3 cursor."""
    from flowcli.db.plain_schema import MODEL_COLUMNS

    tables = frozenset(
        str(r[0]) for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    )
    revisions = None
    if VERSION_TABLE in tables:
        revisions = [str(r[0]) for r in cur.execute(f"SELECT version_num FROM {VERSION_TABLE}")]
    columns = {
        name: frozenset(str(r[1]) for r in cur.execute(f'PRAGMA table_info("{name}")'))
        for name in MODEL_COLUMNS
        if name in tables
    }
    return SchemaFacts(tables=tables, columns=columns, revisions=revisions)


def connection_schema_facts(conn: Connection) -> SchemaFacts:
    """SchemaFacts read through SQLAlchemy (any dialect)."""
    from flowcli.db.plain_schema import MODEL_COLUMNS

    tables = frozenset(existing_tables(conn))
    columns = {
        name: frozenset(existing_columns(conn, name)) for name in MODEL_COLUMNS if name in tables
    }
    return SchemaFacts(tables=tables, columns=columns, revisions=read_revisions(conn))


def missing_objects(conn: Connection) -> list[str]:
    """Tables and columns of the models that the database lacks, as ``table[.column]``."""
    return connection_schema_facts(conn).missing()


def schema_facts(db: Database) -> SchemaFacts:
    """The database's SchemaFacts, on the bare driver where it can be."""
    if db.direct_sqlite:
        with db.sqlite_read() as cur:
            return sqlite_schema_facts(cur)
    with db.read() as conn:
        return connection_schema_facts(conn)


def database_exists(db: Database) -> bool:
    """False for a SQLite file that is missing or empty (flowcli would create it)."""
    if not db.is_sqlite or db.target.path is None:
        return True
    return sqlite_file_state(db.target.path) == "sqlite"


def create_if_new(db: Database) -> bool:
    """Create a missing or empty SQLite file at head (the embedded default)."""
    if database_exists(db):
        return False
    from flowcli.db.migrate import upgrade

    upgrade(db, "head")
    return True


_HOW_TO_CREATE = (
    "create it with `flowcli db upgrade` (or by adding something: "
    "`flowcli flow import FILE`, `flowcli role add …`)"
)


def require_existing(db: Database) -> None:
    """Refuse, for a command that needs existing rows, a SQLite file missing or empty."""
    if not db.is_sqlite or db.target.path is None:
        return
    state = sqlite_file_state(db.target.path)
    if state == "missing":
        raise DatabaseMissingError(f"database {db.target.display} does not exist; {_HOW_TO_CREATE}")
    if state == "empty":
        raise DatabaseMissingError(
            f"database {db.target.display} is an empty file (no flowcli tables yet); "
            f"{_HOW_TO_CREATE}"
        )


def require_schema(db: Database, *, create: bool = True) -> None:
    """Make sure the database has flowcli's schema at head.

    ``create``: a missing or empty database is created at head (commands that add
    something new); without it such a database is an error saying how to create one.
    """
    if db.schema_checked:
        return
    if not create:
        require_existing(db)
    elif create_if_new(db):
        db.schema_checked = True
        return

    facts = schema_facts(db)
    if facts.revisions is None and not facts.tables:
        if not create:
            raise DatabaseMissingError(
                f"database {db.target.display} has no tables yet; {_HOW_TO_CREATE}"
            )
        # An empty database (e.g. a fresh PostgreSQL schema) is created at head.
        from flowcli.db.migrate import upgrade

        upgrade(db, "head")
        db.schema_checked = True
        return
    refuse_unless_at_head(db.target.display, facts)
    db.schema_checked = True


def refuse_unless_at_head(display: str, facts: SchemaFacts) -> None:
    """Raise SchemaError, one line naming the fix, unless the facts show flowcli's schema at
    head: versioned, one version row, at HEAD_REVISION, no table or column missing."""
    fix_hint = "run `flowcli db doctor --fix`"
    state = classify_revisions(facts.revisions)
    if state.kind == "absent":
        from flowcli.db.plain_schema import SHARED_TABLES

        lacking = [t for t in SHARED_TABLES if t not in facts.tables]
        if lacking and len(lacking) < len(SHARED_TABLES):
            # Some of the shared tables but not all (one was dropped, or never made):
            # the user needs to hear which table is missing.
            shown = ", ".join(lacking)
            raise SchemaError(
                f"database {display} lacks table{'s' if len(lacking) > 1 else ''} "
                f"{shown} and is not yet adopted by flowcli; {fix_hint} to create "
                f"{'them' if len(lacking) > 1 else 'it'} and adopt the database"
            )
        raise SchemaError(
            f"database {display} is not managed by flowcli "
            f"(no {VERSION_TABLE} table); {fix_hint} to adopt it"
        )
    if state.kind == "several":
        rows = state.rows or ()
        raise SchemaError(
            f"database {display} has {len(rows)} rows in {VERSION_TABLE}; {fix_hint} to examine it"
        )
    if state.kind == "behind":
        raise SchemaError(
            f"database {display} is at revision {state.current}, behind head "
            f"{HEAD_REVISION}; run `flowcli db upgrade`"
        )
    if state.kind == "unknown":
        raise SchemaError(
            f"database {display} is at revision {state.current}, which this "
            f"flowcli does not know (it is newer than this flowcli, or revisions were "
            "deleted); upgrade flowcli or run `flowcli db doctor`"
        )
    missing = facts.missing()
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise SchemaError(f"database {display} lacks {shown}; {fix_hint}")
