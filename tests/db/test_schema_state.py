"""The one classifier of a schema's state, on plain facts (no database needed)."""

from __future__ import annotations

import pytest

from flowcli.db.revisions import HEAD_REVISION, KNOWN_REVISIONS
from flowcli.db.schema_state import (
    MissingObject,
    classify_revisions,
    index_is_present,
    missing_objects,
)

OLDER = KNOWN_REVISIONS[0]


@pytest.mark.parametrize(
    ("rows", "kind", "current"),
    [
        (None, "absent", None),
        ([], "several", None),
        ([OLDER, HEAD_REVISION], "several", None),
        ([HEAD_REVISION], "head", HEAD_REVISION),
        ([OLDER], "behind", OLDER),
        (["9999"], "unknown", "9999"),
        (["abc123"], "unknown", "abc123"),
    ],
)
def test_revisions_are_classified(rows: list[str] | None, kind: str, current: str | None) -> None:
    state = classify_revisions(rows)
    assert state.kind == kind
    assert state.current == current
    assert state.rows == (None if rows is None else tuple(rows))


REQUIRED = {"sessions": ["id", "status", "version"], "messages": ["id", "content"]}


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (
            {"sessions": {"id", "status", "version"}, "messages": {"id", "content"}},
            [],
        ),
        ({"sessions": {"id", "status", "version"}}, ["messages"]),
        (
            {"sessions": {"id"}, "messages": {"id", "content", "extra"}},
            ["sessions.status", "sessions.version"],
        ),
        ({}, ["sessions", "messages"]),
        ({"other": {"x"}}, ["sessions", "messages"]),
    ],
)
def test_missing_objects_in_the_order_required(
    columns: dict[str, set[str]], expected: list[str]
) -> None:
    assert [str(found) for found in missing_objects(REQUIRED, columns)] == expected


def test_a_missing_table_is_not_also_reported_column_by_column() -> None:
    assert missing_objects(REQUIRED, {"sessions": {"id", "status", "version"}}) == [
        MissingObject("messages")
    ]


@pytest.mark.parametrize(
    ("wanted", "unique", "present", "expected"),
    [
        (("session_id",), False, [(("session_id",), False)], True),
        (("session_id",), True, [(("session_id",), False)], False),
        (("session_id",), False, [(("session_id",), True)], True),
        (("a", "b"), True, [(("b", "a"), True)], False),
        (("a", "b"), True, [(["a", "b"], True)], True),
        (("a",), False, [], False),
    ],
)
def test_an_index_is_served_by_the_same_columns_and_enough_uniqueness(
    wanted: tuple[str, ...], unique: bool, present: list[tuple[list[str], bool]], expected: bool
) -> None:
    assert index_is_present(wanted, unique, present) is expected
