"""Who owns a database, flowcli or MRC, and what flowcli added to a database MRC owns.

flowcli shares MRC's tables. On a database MRC owns, flowcli follows MRC's conventions
and adds nothing MRC's own code can violate (docs/mrc.md), so every command needs to
know the owner. It is recorded in flowcli's own key/value table ``flowcli_meta``
(``owner`` = ``flowcli`` | ``mrc``) by revision 0004 and by adoption (``db doctor
--fix``), and ``Database.owner`` reads it once per process. A database without the
record is judged from its tables: whoever created ``sessions`` owns it (flowcli names
its primary key ``pk_sessions``; MRC's is unnamed); without a ``sessions`` table, MRC's
``alembic_version`` or any table foreign to flowcli means MRC.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from flowcli.db.inspection import existing_columns, existing_tables
from flowcli.db.mrc_schema import FLOWCLI_COLUMNS
from flowcli.db.revisions import VERSION_TABLE

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

OWNER_FLOWCLI = "flowcli"
OWNER_MRC = "mrc"
OWNERS = (OWNER_FLOWCLI, OWNER_MRC)
META_TABLE = "flowcli_meta"
# The name flowcli's revision 0001 gives the sessions primary key (tables.NAMING_CONVENTION).
FLOWCLI_SESSIONS_PK = "pk_sessions"


def read_meta(conn: Connection) -> dict[str, str] | None:
    """flowcli_meta as a dict, or None when the table does not exist."""
    from sqlalchemy import text

    if META_TABLE not in existing_tables(conn):
        return None
    rows = conn.execute(text(f"SELECT key, value FROM {META_TABLE}")).all()
    return {str(k): ("" if v is None else str(v)) for k, v in rows}


def infer_owner(conn: Connection) -> str:
    """The owner judged from the tables alone (no record, or while recording it)."""
    from sqlalchemy import inspect

    from flowcli.db.tables import OWNED_TABLES

    tables = existing_tables(conn)
    if "sessions" in tables:
        pk_name = inspect(conn).get_pk_constraint("sessions").get("name")
        return OWNER_FLOWCLI if pk_name == FLOWCLI_SESSIONS_PK else OWNER_MRC
    foreign = {
        t
        for t in tables - set(OWNED_TABLES) - {VERSION_TABLE}
        if not t.startswith(("sqlite_", "pg_"))
    }
    return OWNER_MRC if foreign else OWNER_FLOWCLI


def read_owner(conn: Connection) -> str:
    """The recorded owner, else the inferred one."""
    meta = read_meta(conn)
    recorded = (meta or {}).get("owner")
    if recorded in OWNERS:
        return str(recorded)
    return infer_owner(conn)


# How a SQLite CREATE TABLE names its primary key ("CONSTRAINT pk_sessions PRIMARY KEY").
_SQLITE_PK_NAME = re.compile(r"CONSTRAINT\s+[\"`\[]?(\w+)[\"`\]]?\s+PRIMARY\s+KEY", re.IGNORECASE)


def read_owner_sqlite(cur: Any) -> str:
    """read_owner on a bare sqlite3 cursor: the same decision, without SQLAlchemy."""
    from flowcli.db.plain_schema import MODEL_COLUMNS

    tables = {
        str(name): sql
        for name, sql in cur.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    }
    if META_TABLE in tables:
        recorded = sqlite_owner(cur)
        if recorded is not None:
            return recorded
    if "sessions" in tables:
        found = _SQLITE_PK_NAME.search(tables["sessions"] or "")
        return OWNER_FLOWCLI if found and found.group(1) == FLOWCLI_SESSIONS_PK else OWNER_MRC
    foreign = {
        t
        for t in set(tables) - set(MODEL_COLUMNS) - {VERSION_TABLE}
        if not t.startswith(("sqlite_", "pg_"))
    }
    return OWNER_MRC if foreign else OWNER_FLOWCLI


def write_meta(conn: Connection, values: dict[str, Any]) -> None:
    """Insert or replace keys of flowcli_meta (non-strings are stored as JSON)."""
    from sqlalchemy import text

    for key, value in values.items():
        stored = value if isinstance(value, str) or value is None else json.dumps(value)
        conn.execute(text(f"DELETE FROM {META_TABLE} WHERE key = :k"), {"k": key})
        conn.execute(
            text(f"INSERT INTO {META_TABLE} (key, value) VALUES (:k, :v)"), {"k": key, "v": stored}
        )


def sqlite_owner(cursor: Any) -> str | None:
    """The recorded owner read on a raw sqlite3 cursor (used while a connection opens)."""
    try:
        row = cursor.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'owner'").fetchone()
    except Exception:  # noqa: BLE001 - no table yet, or unreadable: no record
        return None
    return str(row[0]) if row and row[0] in OWNERS else None


def flowcli_additions(conn: Connection) -> list[str]:
    """What flowcli has added to a database MRC owns, as it is now: flowcli's own tables,
    the columns of its later revisions on MRC's tables, and the indexes it created."""
    from sqlalchemy import inspect

    from flowcli.db.tables import METADATA, SHARED_TABLES

    tables = existing_tables(conn)
    own = [VERSION_TABLE, *(t for t in METADATA.tables if t not in SHARED_TABLES)]
    added = [f"table {t}" for t in own if t in tables]
    flowcli_indexes = {str(ix.name) for t in METADATA.tables.values() for ix in t.indexes}
    insp = inspect(conn)
    for name in SHARED_TABLES:
        if name not in tables:
            continue
        have = existing_columns(conn, name)
        added.extend(f"column {name}.{c}" for c in FLOWCLI_COLUMNS.get(name, ()) if c in have)
        added.extend(
            f"index {ix['name']}"
            for ix in insp.get_indexes(name)
            if ix.get("name") in flowcli_indexes
        )
    return added
