"""Log exports (``logs --json`` / ``--jsonl`` / ``--csv``) written at the driver's speed.

A million rows must stream at well over 200,000 rows a second with flat memory, so the
rows arrive in batches of plain tuples (flowcli.db.log_rows.iter_log_batches), each
column has an encoder chosen once, and each batch is written in one call. The text is
byte for byte what ``json.dumps(row, default=json_default, ensure_ascii=False)`` and
``csv.writer`` wrote for the row dicts: timestamps as UTC ISO 8601 with ``Z`` (JSON) or
``isoformat(" ")`` (CSV), booleans as booleans, NULL as null or an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from flowcli.db.plain_schema import BOOLEAN_COLUMNS, DATETIME_COLUMNS
from flowcli.render.json_output import json_default, utc_iso

Batches = Iterable[Sequence[Sequence[Any]]]
_TABLE = "step_execution_logs"


def _json_value(value: Any) -> str:
    """json.dumps of one value, fast for the types a database returns."""
    kind = type(value)
    if kind is str:
        return str(encode_basestring(value))
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float and value == value and value not in (_INF, -_INF):
        return float.__repr__(value)
    return json.dumps(value, default=json_default, ensure_ascii=False)


_INF = float("inf")


def _json_column(values: Sequence[Any]) -> list[str]:
    # Most cells are text or whole numbers: those skip the general function.
    return [
        encode_basestring(v)
        if v.__class__ is str
        else int.__repr__(v)
        if v.__class__ is int
        else _json_value(v)
        for v in values
    ]


def _iso_text(text: str) -> str | None:
    """isoformat() of the naive datetime a stored "YYYY-MM-DD HH:MM:SS[.ffffff]" text
    holds, read off the text itself; None for any other text (it is parsed instead)."""
    size = len(text)
    if not (
        (size == 19 or (size == 26 and text[19] == "."))
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == " "
        and text[13] == ":"
        and text[16] == ":"
    ):
        return None
    try:
        parsed = datetime.fromisoformat(text)  # the check that it is a real moment
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        return None
    if parsed.microsecond:
        return f"{text[:10]}T{text[11:]}"
    return f"{text[:10]}T{text[11:19]}"


def _json_time(value: Any) -> str:
    if value.__class__ is str:
        iso = _iso_text(value)
        if iso is not None:
            return f'"{iso}Z"'
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(encode_basestring(value))  # not a timestamp: as stored
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return f'"{value.isoformat()}Z"'  # naive is UTC (render.utc_iso)
        return f'"{utc_iso(value)}"'
    return _json_value(value)


def _json_bool(value: Any) -> str:
    # As SQLAlchemy's Boolean reads a stored value: bool(value), NULL stays null.
    if value is None:
        return "null"
    return "true" if value else "false"


def _json_lines(columns: Sequence[str], batch: Sequence[Sequence[Any]]) -> list[str]:
    """The batch's rows as JSON objects: encoded a column at a time, then each row's
    cells put into one prepared format with the keys already in place."""
    dates, flags = DATETIME_COLUMNS[_TABLE], BOOLEAN_COLUMNS[_TABLE]
    layout = "{" + ", ".join(f"{json.dumps(c)}: %s" for c in columns) + "}"
    encoded = []
    for name, values in zip(columns, zip(*batch, strict=True), strict=True):
        if name in dates:
            encoded.append([_json_time(v) for v in values])
        elif name in flags:
            encoded.append([_json_bool(v) for v in values])
        else:
            encoded.append(_json_column(values))
    return [layout % cells for cells in zip(*encoded, strict=True)]


def write_jsonl(columns: Sequence[str], batches: Batches) -> None:
    """One JSON object per row and line."""
    write = sys.stdout.write
    for batch in batches:
        if batch:
            write("\n".join(_json_lines(columns, batch)) + "\n")
    sys.stdout.flush()


def write_json_array(columns: Sequence[str], batches: Batches) -> None:
    """One JSON array, one row per line, written batch by batch."""
    write = sys.stdout.write
    write("[")
    first = True
    for batch in batches:
        if not batch:
            continue
        write(("\n" if first else ",\n") + ",\n".join(_json_lines(columns, batch)))
        first = False
    write("\n]\n" if not first else "]\n")
    sys.stdout.flush()


def _csv_time(value: Any) -> Any:
    if value.__class__ is str:
        iso = _iso_text(value)
        if iso is not None:
            return f"{iso[:10]} {iso[11:]}"
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # not a timestamp: as stored
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


def _csv_bool(value: Any) -> Any:
    return None if value is None else bool(value)


def write_csv(columns: Sequence[str], batches: Batches) -> None:
    """CSV with a header row; NULL is an empty cell."""
    dates, flags = DATETIME_COLUMNS[_TABLE], BOOLEAN_COLUMNS[_TABLE]
    fixes = [
        (i, _csv_time if c in dates else _csv_bool)
        for i, c in enumerate(columns)
        if c in dates or c in flags
    ]
    # Each batch is written to a buffer, then to stdout in one call.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    write = sys.stdout.write
    for batch in batches:
        rows = []
        for row in batch:
            cells = list(row)
            for i, fix in fixes:
                cells[i] = fix(cells[i])
            rows.append(cells)
        writer.writerows(rows)
        write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()
    write(buffer.getvalue())
    sys.stdout.flush()
