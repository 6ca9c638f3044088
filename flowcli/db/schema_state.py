"""The one classifier of a schema's state: which revision it is at, and what it lacks.

Pure functions over plain facts (revision strings, table names, column names, index
column tuples), so the facts can be gathered however is cheapest: the schema guard
(flowcli.db.schema) reads SQLite's catalogue, the doctor (flowcli.doctor.schema_checks,
flowcli.doctor.schema_drift) reflects with SQLAlchemy's inspector, and a caller without
SQLAlchemy can use plain DBAPI queries. The guard and the doctor word their messages
differently, but decide with these same functions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

from flowcli.db.revisions import HEAD_REVISION, KNOWN_REVISIONS

RevisionKind = Literal["absent", "several", "head", "behind", "unknown"]


class RevisionState(NamedTuple):
    """Where flowcli's version table says the schema is.

    ``absent``: no version table (unversioned); ``several``: not exactly one row (none,
    or several heads); ``head``; ``behind``: a revision this flowcli knows, older than
    head; ``unknown``: a revision it does not know (a newer flowcli, or deleted ones).
    """

    kind: RevisionKind
    rows: tuple[str, ...] | None

    @property
    def current(self) -> str | None:
        """The one revision, when there is exactly one row."""
        return self.rows[0] if self.rows is not None and len(self.rows) == 1 else None


def classify_revisions(rows: Sequence[str] | None) -> RevisionState:
    """``rows``: the version table's rows, or None when the table does not exist."""
    if rows is None:
        return RevisionState("absent", None)
    found = tuple(rows)
    if len(found) != 1:
        return RevisionState("several", found)
    if found[0] == HEAD_REVISION:
        return RevisionState("head", found)
    if found[0] in KNOWN_REVISIONS:
        return RevisionState("behind", found)
    return RevisionState("unknown", found)


class MissingObject(NamedTuple):
    """A table, or a column of a table that exists, that the models need."""

    table: str
    column: str | None = None

    def __str__(self) -> str:
        return self.table if self.column is None else f"{self.table}.{self.column}"


def missing_objects(
    required: Mapping[str, Iterable[str]], columns: Mapping[str, Collection[str]]
) -> list[MissingObject]:
    """What of ``required`` (table -> its column names) the database lacks.

    ``columns`` maps each table the database has (at least those in ``required``) to its
    column names. A missing table is reported once, not column by column. In the order of
    ``required``, then of its columns.
    """
    missing: list[MissingObject] = []
    for table, wanted in required.items():
        have = columns.get(table)
        if have is None:
            missing.append(MissingObject(table))
            continue
        missing.extend(MissingObject(table, name) for name in wanted if name not in have)
    return missing


def index_is_present(
    wanted: Sequence[str], unique: bool, present: Iterable[tuple[Sequence[str], bool]]
) -> bool:
    """Whether an index on ``wanted`` columns (unique when ``unique``) is served by one of
    ``present`` ((columns, unique) of the table's indexes, unique constraints and primary
    key): the same columns in the same order, and unique if uniqueness is wanted."""
    return any(
        tuple(cols) == tuple(wanted) and (is_unique or not unique) for cols, is_unique in present
    )
