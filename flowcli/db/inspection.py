"""Facts about a live database's schema: its tables, their columns, flowcli's revisions.

Gathered here and nowhere else, cheaply (SQLite's catalogue directly, SQLAlchemy's
inspector elsewhere) and without Alembic, so the schema guard, the owner check, the
migrations and the doctor all read the same facts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcli.db.revisions import VERSION_TABLE

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def read_revisions(conn: Connection) -> list[str] | None:
    """The rows of flowcli's version table, or None when the table does not exist."""
    from sqlalchemy import text

    if VERSION_TABLE not in existing_tables(conn):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return [str(r) for r in rows]


def existing_tables(conn: Connection) -> set[str]:
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        return {r[0] for r in rows}
    from sqlalchemy import inspect

    return set(inspect(conn).get_table_names())


def existing_columns(conn: Connection, table: str) -> set[str]:
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        return {r[1] for r in conn.execute(text(f'PRAGMA table_info("{table}")'))}
    from sqlalchemy import inspect

    return {c["name"] for c in inspect(conn).get_columns(table)}
