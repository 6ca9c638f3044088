"""Rows read on the bare sqlite3 driver, shaped as SQLAlchemy Core returns them.

The one-step commands on a SQLite file read through sqlite3 alone (no SQLAlchemy import).
Their output must not change for it: a DateTime column comes back as a datetime and a
Boolean column as a bool, exactly as the models' types read them (the column kinds come
from flowcli.db.plain_schema, which a test holds equal to the models).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flowcli.db.plain_schema import BOOLEAN_COLUMNS, DATETIME_COLUMNS, MODEL_COLUMNS


def _as_datetime(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # NULL, a datetime the driver made, or a number stored by someone else
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return value  # not a timestamp flowcli or MRC writes: shown as stored


def typed_row(table: str, columns: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """A row as a dict, its datetime and boolean columns converted as SQLAlchemy does."""
    row = dict(zip(columns, values, strict=True))
    for name in DATETIME_COLUMNS[table].intersection(row):
        row[name] = _as_datetime(row[name])
    for name in BOOLEAN_COLUMNS[table].intersection(row):
        if row[name] is not None:
            row[name] = bool(row[name])
    return row


def fetch_row(cur: Any, table: str, row_id: int) -> dict[str, Any] | None:
    """Every column of the models' ``table`` for one id, or None."""
    columns = MODEL_COLUMNS[table]
    listed = ", ".join(f'"{c}"' for c in columns)
    found = cur.execute(f"SELECT {listed} FROM {table} WHERE id = ?", (row_id,)).fetchone()
    return None if found is None else typed_row(table, columns, found)
