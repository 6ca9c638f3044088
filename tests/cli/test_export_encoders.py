"""The exports' column encoders (flowcli.render.exports) write byte for byte what
json.dumps and csv.writer wrote for the typed row dicts, on any stored values."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcli.db.direct_reads import typed_row
from flowcli.db.log_rows import LOG_COLUMNS
from flowcli.render.exports import write_csv, write_json_array, write_jsonl
from flowcli.render.json_output import json_default

TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(" ", "microseconds")),
    st.datetimes().map(lambda d: d.isoformat(" ", "seconds")),
    st.datetimes().map(lambda d: d.replace(microsecond=0).isoformat(" ", "microseconds")),
    st.datetimes().map(lambda d: d.isoformat()),  # a T, as another writer may store it
    st.sampled_from(
        [
            "2026-W48-1 01:02:03",  # an ISO week date: parsed, not read off the text
            "2026-11-30 01:02:03+05:00",
            "2026-02-30 01:02:03.000001",  # no such day
            "yesterday",
            "",
        ]
    ),
    st.none(),
    st.integers(),
)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(['{"a": "b, c"}', 'say "hi"\r\n', "100%s %d", "→ 🦜", "\x00\x1b"]),
)


def _row() -> st.SearchStrategy[tuple[Any, ...]]:
    cells = []
    for name in LOG_COLUMNS:
        if name in ("created_at", "started_at", "completed_at"):
            cells.append(TIMES)
        elif name in ("condition_evaluation", "loop_check_result"):
            cells.append(st.one_of(st.none(), st.integers(0, 2)))
        else:
            cells.append(ANY_VALUE)
    return st.tuples(*cells)


def _captured(write: Any, batches: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    write(LOG_COLUMNS, batches)
    return out.getvalue()


@settings(max_examples=120, deadline=None)
@given(st.lists(_row(), max_size=5))
def test_same_bytes_as_the_row_dicts(rows: list[tuple[Any, ...]]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        dicts = [typed_row("step_execution_logs", LOG_COLUMNS, r) for r in rows]
        expected_jsonl = "".join(
            json.dumps(d, default=json_default, ensure_ascii=False) + "\n" for d in dicts
        )
        assert _captured(write_jsonl, [rows[:2], rows[2:]], mp) == expected_jsonl
        body = ",\n".join(json.dumps(d, default=json_default, ensure_ascii=False) for d in dicts)
        expected_array = "[" + ("\n" + body + "\n]\n" if dicts else "]\n")
        assert _captured(write_json_array, [rows[:1], rows[1:]], mp) == expected_array
        reference = io.StringIO()
        writer = csv.writer(reference)
        writer.writerow(LOG_COLUMNS)
        for d in dicts:
            writer.writerow(
                [
                    ""
                    if d[c] is None
                    else (d[c].isoformat(sep=" ") if hasattr(d[c], "isoformat") else d[c])
                    for c in LOG_COLUMNS
                ]
            )
        assert _captured(write_csv, [rows], mp) == reference.getvalue()
