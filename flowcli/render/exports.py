"""Log exports (``logs --json`` / ``--jsonl`` / ``--csv``), a million rows with flat memory.

Two paths write the same bytes. On a SQLite file SQLite builds each row's whole line
(flowcli.db.export_lines) and ``write_lines`` joins and writes them a batch at a time,
encoding in Python only the rare rows SQL leaves to it. Elsewhere (PostgreSQL, and as the
reference the tests hold the SQL to) the rows arrive in batches of plain tuples
(flowcli.db.log_rows.iter_log_batches), each column has an encoder chosen once, and each
batch is written in one call. The text is byte for byte what
``json.dumps(row, default=json_default, ensure_ascii=False)`` and ``csv.writer`` wrote
for the row dicts: timestamps as UTC ISO 8601 with ``Z`` (JSON) or ``isoformat(" ")``
(CSV), booleans as booleans, NULL as null or an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
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


def _csv_fixes(columns: Sequence[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    dates, flags = DATETIME_COLUMNS[_TABLE], BOOLEAN_COLUMNS[_TABLE]
    return [
        (i, _csv_time if c in dates else _csv_bool)
        for i, c in enumerate(columns)
        if c in dates or c in flags
    ]


def _csv_cells(fixes: list[tuple[int, Callable[[Any], Any]]], row: Sequence[Any]) -> list[Any]:
    cells = list(row)
    for i, fix in fixes:
        cells[i] = fix(cells[i])
    return cells


def write_csv(columns: Sequence[str], batches: Batches) -> None:
    """CSV with a header row; NULL is an empty cell."""
    fixes = _csv_fixes(columns)
    # Each batch is written to a buffer, then to stdout in one call.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    write = sys.stdout.write
    for batch in batches:
        writer.writerows([_csv_cells(fixes, row) for row in batch])
        write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()
    write(buffer.getvalue())
    sys.stdout.flush()


# --- the SQLite path: lines built by SQLite --------------------------------------------

LineBatches = Iterable[Sequence[tuple[int, bytes]]]
FetchRows = Callable[[Sequence[int]], "dict[int, tuple[Any, ...]]"]


def _byte_writer() -> tuple[Callable[[bytes], Any], Callable[[], Any]]:
    """Write UTF-8 bytes to stdout: straight to its buffer when stdout encodes UTF-8
    (no decoding and encoding again), else decoded and written as text, as before."""
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    encoding = str(getattr(stream, "encoding", None) or "").lower().replace("-", "")
    if buffer is not None and encoding in ("utf8", "utf_8"):
        stream.flush()  # whatever the text layer holds comes first
        return buffer.write, buffer.flush
    return (lambda data: stream.write(data.decode("utf-8"))), stream.flush


def _python_line(fmt: str, columns: Sequence[str], row: Sequence[Any]) -> str:
    """One row as the Python encoders write it, without the line break."""
    if fmt == "jsonl":
        return _json_lines(columns, [row])[0]
    buffer = io.StringIO()
    csv.writer(buffer).writerow(_csv_cells(_csv_fixes(columns), row))
    return buffer.getvalue()[:-2]  # the writer's "\r\n"


def _mended(
    fmt: str, columns: Sequence[str], batch: Sequence[tuple[int, bytes]], fetch_rows: FetchRows
) -> list[bytes]:
    """The batch's lines, those SQL left to Python (the BAD marker, or stored text that
    is not UTF-8) encoded by Python from the rows read again."""
    lines = [line for _, line in batch]
    redo = []
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            redo.append(i)
    # Text that is not UTF-8 fails here as it fails on the Python path: the driver
    # cannot decode it, and the command ends with that error.
    rows = fetch_rows([batch[i][0] for i in redo])
    for i in redo:
        lines[i] = _python_line(fmt, columns, rows[batch[i][0]]).encode("utf-8")
    return lines


def write_lines(
    fmt: str,
    columns: Sequence[str],
    batches: LineBatches,
    fetch_rows: FetchRows,
    *,
    array: bool = False,
) -> None:
    """Write lines SQLite built (flowcli.db.log_rows.iter_line_batches): JSON lines, or
    with ``array`` one JSON array (``fmt`` "jsonl"), or CSV with a header (``fmt``
    "csv"). Each batch is joined, checked to be UTF-8 in one call, and written in one."""
    write, flush = _byte_writer()
    csv_out = fmt == "csv"
    end = b"\r\n" if csv_out else b"\n"
    sep = b",\n" if array else end
    if csv_out:
        header = io.StringIO()
        csv.writer(header).writerow(columns)
        write(header.getvalue().encode("utf-8"))
    first = True
    for batch in batches:
        if not batch:
            continue
        data = sep.join([line for _, line in batch])
        if not data.isascii():  # ASCII is UTF-8 and holds no BAD: no decoding needed
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                data = sep.join(_mended(fmt, columns, batch, fetch_rows))
        if array:
            write((b"[\n" if first else b",\n") + data)
        else:
            write(data + end)
        first = False
    if array:
        write(b"[]\n" if first else b"\n]\n")
    flush()
