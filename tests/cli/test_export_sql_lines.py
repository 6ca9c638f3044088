"""The SQLite path of the exports (flowcli.db.export_lines + render.exports.write_lines):
lines SQLite builds are byte for byte what the Python encoders write, and what
json.dumps / csv.writer give for the typed row dicts, on any stored values; rows SQL
cannot be sure of go to Python; ordinary rows never do."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcli.db.direct_reads import typed_row
from flowcli.db.log_rows import (
    LOG_COLUMNS,
    LogFilter,
    fetch_log_rows,
    iter_line_batches,
    iter_log_batches,
)
from flowcli.db.step_tx import StepTx
from flowcli.render.exports import write_csv, write_json_array, write_jsonl, write_lines
from flowcli.render.json_output import json_default

pytestmark = pytest.mark.sqlite_only

COLUMNS = LOG_COLUMNS[1:]  # what the test inserts; id is the table's own
DATES = ("created_at", "started_at", "completed_at")
FLAGS = ("condition_evaluation", "loop_check_result")

STAMPS = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(" ", "microseconds")),
    st.datetimes().map(lambda d: d.isoformat(" ", "seconds")),
    st.datetimes().map(lambda d: d.replace(microsecond=0).isoformat(" ", "microseconds")),
    st.datetimes().map(lambda d: d.isoformat()),  # a T, as another writer may store it
    st.sampled_from(
        [
            "2026-02-30 01:02:03.000001",  # no such day (SQLite's date() keeps it)
            "2026-02-29 00:00:00",  # not a leap year
            "2024-02-29 23:59:59.999999",  # a leap year; SQLite rounds it to the next day
            "2026-01-01 24:00:00.000000",  # hour 24: SQLite moves to the next day
            "2026-13-01 00:00:00.000000",
            "0000-01-01 00:00:00.000000",  # SQLite has a year 0, Python has none
            "-001-01-01 00:00:00.000000",
            "2026-01-01 00:00:00.12345Z",  # 26 characters, a zone
            "2026-01-01 00:00:00.12345 ",
            "2026-01-01 00:00:00.1234567",
            "2026-01-01 00:00:00.123456\x00",  # a NUL after a canonical stamp
            "2026-01-01 00:00:00\x00",
            "2026-01-01  00:00:00.12345",
            "2026-01-01T00:00:00Z",
            "2026-11-30 01:02:03+05:00",
            "2026-W48-1 01:02:03",
            "9999-12-31 23:59:59.999999",
            "2026-01-0١ 00:00:00.000000",  # a non-ASCII digit
            "yesterday",
            "",
        ]
    ),
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
FLOATS = st.one_of(
    st.floats(allow_nan=False),  # NaN is stored as NULL
    st.sampled_from(
        [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e15, 999999999999999.9, 1e16, 0.1 + 0.2]
    ),
    st.floats(min_value=1e-5, max_value=1e16),
    st.integers(-(10**15), 10**15).map(lambda i: i / 100),
)
TEXT = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(
        [
            '{"a": "b, c"}',
            'say "hi"\r\n',
            "100%s %d %%",
            "→ 🦜 \U0010ffff",
            "\x00\x1b\x7f\x08\x0c\t",
            "back\\slash\\",
            '","',
            "\\u0001",
            "",
            " ",
            "x" * 20_000,
        ]
    ),
)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    FLOATS,
    TEXT,
    st.binary(max_size=8),
)


def _row() -> st.SearchStrategy[tuple[Any, ...]]:
    cells: list[st.SearchStrategy[Any]] = []
    for name in COLUMNS:
        if name in DATES:
            cells.append(st.one_of(STAMPS, ANY_VALUE))
        elif name in FLAGS:
            cells.append(st.one_of(st.none(), st.integers(-2, 2), ANY_VALUE))
        elif name == "execution_order":
            cells.append(st.just(0))  # numbered on insert
        elif name == "step_id":  # NOT NULL
            cells.append(st.one_of(st.integers(1, 9), ANY_VALUE.filter(lambda v: v is not None)))
        else:
            cells.append(ANY_VALUE)

    def same_start(row: tuple[Any, ...], same: bool) -> tuple[Any, ...]:
        # flowcli writes started_at = created_at: the SQL takes a shortcut for it.
        values = list(row)
        if same:
            values[COLUMNS.index("started_at")] = values[COLUMNS.index("created_at")]
        return tuple(values)

    return st.builds(same_start, st.tuples(*cells), st.booleans())


@pytest.fixture(scope="module")
def logs_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """A file with flowcli's tables, its foreign keys off so any value can be stored."""
    from sqlalchemy import create_engine

    from flowcli.db.tables import METADATA

    path: Path = tmp_path_factory.mktemp("exports") / "logs.db"
    engine = create_engine(f"sqlite:///{path}")
    METADATA.create_all(engine)
    engine.dispose()
    con = sqlite3.connect(path)
    yield con
    con.close()


def _store(con: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    con.execute("DELETE FROM step_execution_logs")
    order = COLUMNS.index("execution_order")
    marks = ", ".join("?" for _ in COLUMNS)
    for n, row in enumerate(rows, start=1):
        values = list(row)
        values[order] = n
        con.execute(
            f"INSERT INTO step_execution_logs ({', '.join(COLUMNS)}) VALUES ({marks})",
            [7 if c == "session_id" else v for c, v in zip(COLUMNS, values, strict=True)],
        )
    con.commit()


def _fast(con: sqlite3.Connection, fmt: str, *, array: bool = False, **flt: Any) -> bytes:
    """The SQLite path's bytes, as the command writes them to a UTF-8 stdout."""
    tx = StepTx(con, "sqlite")
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    real, sys.stdout = sys.stdout, out
    try:
        lines = iter_line_batches(tx, 7, fmt, LogFilter(**flt), batch=3)
        write_lines(fmt, LOG_COLUMNS, lines, lambda ids: fetch_log_rows(tx, ids), array=array)
    finally:
        sys.stdout = real
    out.flush()
    return out.buffer.getvalue()


def _python(con: sqlite3.Connection, write: Any, **flt: Any) -> bytes:
    """The Python encoders' bytes for the same rows (PostgreSQL's path)."""
    buffer = io.StringIO(newline="")
    real, sys.stdout = sys.stdout, buffer
    try:
        write(LOG_COLUMNS, iter_log_batches(StepTx(con, "sqlite"), 7, LogFilter(**flt)))
    finally:
        sys.stdout = real
    return buffer.getvalue().encode("utf-8")


def _dicts(con: sqlite3.Connection) -> list[dict[str, Any]]:
    found = con.execute(
        f"SELECT {', '.join(LOG_COLUMNS)} FROM step_execution_logs ORDER BY execution_order"
    ).fetchall()
    return [typed_row("step_execution_logs", LOG_COLUMNS, r) for r in found]


def _csv_reference(dicts: list[dict[str, Any]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
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
    return out.getvalue()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_row(), max_size=7))
def test_sql_lines_are_the_reference_bytes(
    logs_db: sqlite3.Connection, rows: list[tuple[Any, ...]]
) -> None:
    _store(logs_db, rows)
    dicts = _dicts(logs_db)
    reference = [json.dumps(d, default=json_default, ensure_ascii=False) for d in dicts]

    jsonl = _fast(logs_db, "jsonl")
    text = jsonl.decode("utf-8")  # valid UTF-8, or this fails
    # Lines end at "\n" only: U+0085 and U+2028 stay unescaped inside them, as json.dumps
    # leaves them (str.splitlines would break there).
    assert [json.loads(line) for line in text.split("\n")[:-1]] == [
        json.loads(line) for line in reference
    ]
    assert text == "".join(line + "\n" for line in reference)
    assert jsonl == _python(logs_db, write_jsonl)

    array = _fast(logs_db, "jsonl", array=True)
    assert json.loads(array) == [json.loads(line) for line in reference]
    assert array == _python(logs_db, write_json_array)

    data = _fast(logs_db, "csv")
    expected = _csv_reference(dicts)
    assert list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""))) == list(
        csv.reader(io.StringIO(expected, newline=""))
    )
    assert data.decode("utf-8") == expected
    assert data == _python(logs_db, write_csv)


FLOWCLI_ROW = (
    7,
    3,
    None,
    0,
    1,
    0,
    1,
    "completed",
    "success",
    json.dumps({"message_id": 12, "decision": "next step in order"}),
    None,
    1,
    None,
    153,
    48.73,
    "2026-11-30 01:02:03.123456",
    "2026-11-30 01:02:03.123456",
    "2026-11-30 01:02:03.500000",
    json.dumps({"id": 3, "order": 1, "description": 'a "quoted", line\nbreak é 🦜'}),
    json.dumps({"round": 1, "vars": {"n": 1.5}}),
)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_ordinary_rows_need_no_python(logs_db: sqlite3.Connection, fmt: str) -> None:
    """Rows as flowcli and MRC write them never leave SQL: the fast path stays fast."""
    mrc_like = list(FLOWCLI_ROW)
    for name in ("memory_usage_mb", "duration_ms", "started_at", "completed_at"):
        mrc_like[COLUMNS.index(name)] = None
    whole_second = list(FLOWCLI_ROW)
    whole_second[COLUMNS.index("created_at")] = "2026-11-30 01:02:03.000000"
    whole_second[COLUMNS.index("memory_usage_mb")] = 40.0
    _store(logs_db, [FLOWCLI_ROW, tuple(mrc_like), tuple(whole_second)])
    tx = StepTx(logs_db, "sqlite")

    def no_python(ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        raise AssertionError(f"rows {list(ids)} were left to Python")

    for batch in iter_line_batches(tx, 7, fmt):
        for _, line in batch:
            line.decode("utf-8")  # no BAD marker
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    real, sys.stdout = sys.stdout, out
    try:
        write_lines(fmt, LOG_COLUMNS, iter_line_batches(tx, 7, fmt), no_python)
    finally:
        sys.stdout = real
    out.flush()
    write = write_jsonl if fmt == "jsonl" else write_csv
    assert out.buffer.getvalue() == _python(logs_db, write)


def test_filters_apply_to_the_sql_lines(logs_db: sqlite3.Connection) -> None:
    rows = [FLOWCLI_ROW] * 9
    _store(logs_db, rows)
    for flt in ({"last": 4}, {"limit": 3, "offset": 2}, {"offset": 5}, {"statuses": ["failed"]}):
        assert _fast(logs_db, "jsonl", **flt) == _python(logs_db, write_jsonl, **flt)
        assert _fast(logs_db, "csv", **flt) == _python(logs_db, write_csv, **flt)
    assert _fast(logs_db, "jsonl", array=True, statuses=["failed"]) == b"[]\n"


def test_text_that_is_not_utf8_fails_as_on_the_python_path(
    logs_db: sqlite3.Connection,
) -> None:
    _store(logs_db, [FLOWCLI_ROW, FLOWCLI_ROW])
    logs_db.execute(
        "UPDATE step_execution_logs SET error_message = CAST(x'41ff42' AS TEXT) "
        "WHERE execution_order = 2"
    )
    logs_db.execute(  # a lone surrogate, as CESU-8 would store it
        "UPDATE step_execution_logs SET result_type = CAST(x'eda080' AS TEXT) "
        "WHERE execution_order = 1"
    )
    logs_db.commit()
    for fmt in ("jsonl", "csv"):
        with pytest.raises(sqlite3.OperationalError, match="Could not decode to UTF-8"):
            _fast(logs_db, fmt)
        with pytest.raises(sqlite3.OperationalError, match="Could not decode to UTF-8"):
            _python(logs_db, write_jsonl)


def test_a_stdout_that_is_not_utf8_gets_text(
    logs_db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a UTF-8 byte stream under stdout the lines are written as text, encoded
    by the stream as the Python path's would be."""
    _store(logs_db, [FLOWCLI_ROW])
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    tx = StepTx(logs_db, "sqlite")
    write_lines("jsonl", LOG_COLUMNS, iter_line_batches(tx, 7, "jsonl"), lambda ids: {})
    monkeypatch.undo()
    assert out.getvalue().encode("utf-8") == _python(logs_db, write_jsonl)


@pytest.mark.parametrize("reals_cast", [False, True])
@settings(max_examples=300, deadline=None)
@given(st.lists(FLOATS, min_size=1, max_size=50))
def test_floats_are_reprs_or_left_to_python(reals_cast: bool, values: list[float]) -> None:
    """Both ways of writing a float in SQL (printf, or the cast where this SQLite's text
    is printf's) give Python's repr, or BAD."""
    from flowcli.db.export_lines import _FLOAT, _FLOAT_CAST, BAD, reals_as_printf

    con = sqlite3.connect(":memory:")
    if reals_cast and not reals_as_printf(con.cursor()):
        pytest.skip("this SQLite writes floats unlike printf('%!.15g')")
    con.execute("CREATE TABLE t (x FLOAT)")
    con.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    expr = (_FLOAT_CAST if reals_cast else _FLOAT).format(x="x")
    for stored, text in con.execute(f"SELECT x, CAST(printf('%s', {expr}) AS BLOB) FROM t"):
        assert text in (BAD, repr(stored).encode())
    con.close()


def test_sql_lines_stream_with_flat_memory(
    logs_db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracemalloc

    class Counting(io.BytesIO):
        written = 0

        def write(self, data: Any) -> int:  # counted, not kept
            self.written += len(data)
            return len(data)

    def run(rows: int) -> tuple[int, int]:
        """(peak bytes allocated, bytes written) exporting ``rows`` rows."""
        _store(logs_db, [FLOWCLI_ROW] * rows)
        sink = Counting()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(sink, encoding="utf-8"))
        tx = StepTx(logs_db, "sqlite")
        tracemalloc.start()
        write_lines("jsonl", LOG_COLUMNS, iter_line_batches(tx, 7, "jsonl"), lambda ids: {})
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        monkeypatch.undo()
        return peak, sink.written

    run(600)  # warm caches (statement compilation, imports)
    small_peak, small_bytes = run(600)
    large_peak, large_bytes = run(6_000)
    assert large_bytes > 9 * small_bytes  # ten times the rows were written…
    assert large_peak < 2 * small_peak  # …without holding them
