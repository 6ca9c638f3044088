"""flowcli.db.plain_schema (the schema's names for the SQLAlchemy-free paths) says exactly
what the models say."""

from __future__ import annotations

from sqlalchemy import Boolean, DateTime

from flowcli.db import plain_schema
from flowcli.db.tables import METADATA


def test_tables_and_columns_match_the_models() -> None:
    assert {
        name: tuple(c.name for c in table.columns) for name, table in METADATA.tables.items()
    } == plain_schema.MODEL_COLUMNS


def test_datetime_and_boolean_columns_match_the_models() -> None:
    for name, table in METADATA.tables.items():
        assert plain_schema.DATETIME_COLUMNS[name] == {
            c.name for c in table.columns if isinstance(c.type, DateTime)
        }, name
        assert plain_schema.BOOLEAN_COLUMNS[name] == {
            c.name for c in table.columns if isinstance(c.type, Boolean)
        }, name


def test_shared_tables_are_tables_of_the_models() -> None:
    assert set(plain_schema.SHARED_TABLES) < set(METADATA.tables)
