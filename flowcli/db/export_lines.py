"""Export lines built by SQLite: each log row's whole JSON object or CSV record.

``logs --jsonl`` / ``--csv`` of a million rows cannot afford Python work per row, so on a
SQLite file the query writes each row's line in C and Python only joins and writes
batches of them. The line is exactly what the Python encoders (flowcli.render.exports,
the reference) write for the same row, except where SQL cannot be sure to match them:

- a column holding a type it should not (a blob anywhere, text in a boolean column),
  or, in CSV, text holding a NUL where printf's ``%s`` would end it (see line_sql);
- a float SQLite might render differently from Python's ``repr``: outside
  1e-4 <= |x| < 1e15, zero (SQLite prints -0.0 as 0.0), or not exact in 15 digits;
- a timestamp column whose text is not one of the canonical stored forms
  ``YYYY-MM-DD HH:MM:SS[.ffffff]`` naming a moment Python accepts.

There the column's text is ``BAD``, a byte (0xFF) that valid UTF-8 never holds. The
caller decodes each batch as UTF-8: one failure sends the rows that fail, these and any
stored text that is not UTF-8, back to Python (flowcli.render.exports), which reads them
again by id and encodes them, or reports the undecodable text as it always did.

``printf`` puts the pieces together: fewer steps in SQLite's virtual machine than ``||``
between 42 pieces (BENCHMARKS.md has the measurements).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from flowcli.db.plain_schema import BOOLEAN_COLUMNS, DATETIME_COLUMNS

_TABLE = "step_execution_logs"
JSONL = "jsonl"
CSV = "csv"
FORMATS = (JSONL, CSV)
BAD = b"\xff"
_BAD_SQL = "x'FF'"

# Which type to test for first in a column (what the models declare). Only the order of
# the tests depends on it: every column is ready for every type.
_INTEGER_COLUMNS = frozenset(
    {
        "id",
        "session_id",
        "step_id",
        "parent_log_id",
        "execution_order",
        "round_index",
        "loop_iteration",
        "attempt_count",
        "duration_ms",
    }
)
_FLOAT_COLUMNS = frozenset({"memory_usage_mb"})

# printf's 15 significant digits read back as the same double, so Python's shortest
# repr has the same digits, in the range where both write positional notation with a
# ".0" on whole numbers (1e15 is "1000000000000000.0" to Python, "1.0e+15" to SQLite).
_FLOAT = (
    "iif(abs({x}) >= 1e-4 AND abs({x}) < 1e15 "
    "AND CAST(printf('%!.15g', {x}) AS REAL) = {x}, printf('%!.15g', {x}), " + _BAD_SQL + ")"
)
# The same where SQLite's own text of a float is printf's "%!.15g" (3.40 and the
# versions near it; reals_as_printf asks): a cast instead of two printf calls a row.
_FLOAT_CAST = (
    "iif(abs({x}) >= 1e-4 AND abs({x}) < 1e15 "
    "AND CAST(CAST({x} AS TEXT) AS REAL) = {x}, {x}, " + _BAD_SQL + ")"
)
_PROBES = ("0.1", "0.1 + 0.2", "2.0 / 3", "1e14 + 0.5", "123.456", "40.0", "0.0001", "1e-5")


def reals_as_printf(cur: Any) -> bool:
    """Whether this SQLite writes a float as text the way printf('%!.15g') does (newer
    versions may write more digits, which Python's repr would not)."""
    probes = ", ".join(f"CAST({v} AS TEXT) = printf('%!.15g', {v})" for v in _PROBES)
    cur.execute(f"SELECT {probes}")
    return all(cur.fetchone())


# A timestamp in a canonical stored form naming a moment Python accepts: its length in
# bytes (LIKE stops at a NUL), its separators, a digit last (SQLite would take a trailing
# "Z" or space for a zone), a date that survives a round trip through SQLite's day count
# (date() alone keeps "02-30"; hour 24 rolls over to the next day), and a year Python has
# (SQLite has a year 0; the unary + keeps the column's numeric affinity from turning
# '0001' into the number 1). SQLite's parser insists on the digits in between.
_STAMP_26 = (
    "length(CAST({x} AS BLOB)) = 26 AND {x} LIKE '____-__-__ __:__:__.______' "
    "AND substr({x}, 26) BETWEEN '0' AND '9' "
    "AND date({x}, '+0 days') = substr({x}, 1, 10) AND +{x} >= '0001'"
)
_STAMP_19 = (
    "length(CAST({x} AS BLOB)) = 19 AND {x} LIKE '____-__-__ __:__:__' "
    "AND date({x}, '+0 days') = substr({x}, 1, 10) AND +{x} >= '0001'"
)


def _expected(name: str) -> str:
    if name in _INTEGER_COLUMNS:
        return "integer"
    return "real" if name in _FLOAT_COLUMNS else "text"


def _typed(x: str, name: str, branches: dict[str, str]) -> str:
    """A CASE on typeof(x), the column's declared type tested first."""
    first = _expected(name)
    order = [first] + [t for t in ("text", "integer", "null", "real") if t != first]
    whens = " ".join(f"WHEN '{t}' THEN {branches[t]}" for t in order if t in branches)
    return f"CASE typeof({x}) {whens} ELSE {_BAD_SQL} END"


def _stamp(x: str, whole: str, fraction: str, null: str, same_as: str | None) -> str:
    """A timestamp column: ``fraction`` (SQL of the text with its fraction) for the usual
    stored form, ``whole`` of the text cut to whole seconds (isoformat() drops a zero
    fraction), ``null`` for NULL; BAD for anything else.

    A column holding the very bytes of the row's first timestamp column (``same_as``:
    flowcli writes started_at = created_at) skips the checks: if those bytes are not a
    canonical stamp, that column is BAD already and so is the row."""
    text = f"iif(substr({x}, 21) = '000000', {whole.format(t=f'substr({x}, 1, 19)')}, "
    text += f"{fraction.format(t=x)})"
    same = f"WHEN {x} = {same_as} THEN {text} " if same_as else ""
    return (
        f"CASE {same}WHEN {_STAMP_26.format(x=x)} THEN {text} "
        f"WHEN {x} IS NULL THEN {null} "
        f"WHEN {_STAMP_19.format(x=x)} THEN {whole.format(t=x)} "
        f"ELSE {_BAD_SQL} END"
    )


def _json_value(x: str, name: str, same_as: str | None, real: str) -> str:
    """The SQL of one column's JSON text."""
    if name in DATETIME_COLUMNS[_TABLE]:
        # Naive times are UTC: ISO 8601 with a T and a Z.
        iso = "'\"' || replace({t}, ' ', 'T') || 'Z\"'"
        return _stamp(x, iso, iso, "'null'", same_as)
    if name in BOOLEAN_COLUMNS[_TABLE]:
        # As SQLAlchemy reads a stored integer: bool(value).
        return (
            f"CASE typeof({x}) WHEN 'null' THEN 'null' "
            f"WHEN 'integer' THEN iif({x}, 'true', 'false') ELSE {_BAD_SQL} END"
        )
    return _typed(
        x,
        name,
        {
            "text": f"json_quote({x})",
            "integer": x,
            "null": "'null'",
            "real": real.format(x=x),
        },
    )


def _csv_value(x: str, name: str, same_as: str | None, real: str) -> str:
    """The SQL of one column's CSV field."""
    if name in DATETIME_COLUMNS[_TABLE]:
        return _stamp(x, "{t}", "{t}", "''", same_as)  # isoformat(" "): the stored text itself
    if name in BOOLEAN_COLUMNS[_TABLE]:
        return (
            f"CASE typeof({x}) WHEN 'null' THEN '' "
            f"WHEN 'integer' THEN iif({x}, 'True', 'False') ELSE {_BAD_SQL} END"
        )
    # The csv module's minimal quoting: a field holding the delimiter, the quote or a
    # line break is quoted, its quotes doubled.
    text = (
        f"iif(instr({x}, '\"') OR instr({x}, ',') OR instr({x}, char(10)) "
        f"OR instr({x}, char(13)), '\"' || replace({x}, '\"', '\"\"') || '\"', {x})"
    )
    if _expected(name) != "text":
        # This field goes through printf's %s, which would end the text at a NUL: text
        # is rare here, so it pays for the search.
        text = f"iif(instr({x}, char(0)), {_BAD_SQL}, {text})"
    return _typed(x, name, {"text": text, "integer": x, "null": "''", "real": real.format(x=x)})


def line_sql(columns: Sequence[str], fmt: str, *, reals_cast: bool = False) -> str:
    """The SQL expression of a row's line, without its line break: a JSON object as
    ``json.dumps`` writes it (``", "`` and ``": "``), or a CSV record.

    ``reals_cast``: this SQLite writes floats as printf's "%!.15g" (reals_as_printf).
    Runs of pieces are put together by one printf each. Stored text that goes out
    unescaped (a CSV text column) is joined with ``||`` instead, which keeps a NUL
    that printf's %s would end the text at (JSON escapes it: json_quote's "\\u0000")."""
    parts: list[tuple[str, str]] = []  # ("text", literal) | ("value", SQL) | ("raw", SQL)
    real = _FLOAT_CAST if reals_cast else _FLOAT
    stamps = [c for c in columns if c in DATETIME_COLUMNS[_TABLE]]

    def same_as(name: str) -> str | None:
        return _quoted(stamps[0]) if stamps and name != stamps[0] else None

    if fmt == JSONL:
        for i, name in enumerate(columns):
            key = json.dumps(name, ensure_ascii=False)
            parts.append(("text", ("{" if i == 0 else ", ") + key + ": "))
            parts.append(("value", _json_value(_quoted(name), name, same_as(name), real)))
        parts.append(("text", "}"))
    elif fmt == CSV:
        for i, name in enumerate(columns):
            if i:
                parts.append(("text", ","))
            kind = "raw" if _expected(name) == "text" else "value"
            parts.append((kind, _csv_value(_quoted(name), name, same_as(name), real)))
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return " || ".join(_joined(parts))


def _joined(parts: list[tuple[str, str]]) -> list[str]:
    """The SQL operands of ``||``: a printf for each run of literal text and values."""
    out: list[str] = []
    layout: list[str] = []
    args: list[str] = []

    def flush() -> None:
        if args:
            out.append(f"printf({_literal(''.join(layout))}, {', '.join(args)})")
        elif layout:
            out.append(_literal("".join(layout).replace("%%", "%")))
        layout.clear()
        args.clear()

    for kind, sql in parts:
        if kind == "text":
            layout.append(sql.replace("%", "%%"))
        elif kind == "value":
            layout.append("%s")
            args.append(sql)
        else:
            flush()
            out.append(sql)
    flush()
    return out


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
