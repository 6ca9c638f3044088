"""A session's step execution logs, filtered and streamed, as SQL text on a StepTx.

The query behind ``logs`` (the table, the tree and the exports) and every other reader
of log rows (flowcli.db.log_queries.iter_logs). Plain SQL in the StepTx's paramstyle, so
on a SQLite file it runs on the bare sqlite3 driver (``logs`` imports no SQLAlchemy) and
elsewhere on SQLAlchemy's DBAPI connection. Rows are fetched in batches on a cursor of
their own (a server-side one on PostgreSQL), so memory stays flat however long the log,
and converted column by column as SQLAlchemy would (datetimes, booleans).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowcli.db.direct_reads import _as_datetime
from flowcli.db.json_text import loads_json
from flowcli.db.plain_schema import BOOLEAN_COLUMNS, DATETIME_COLUMNS, STEP_LOG_COLUMNS
from flowcli.db.step_tx import StepTx

LOG_COLUMNS = ("id", *STEP_LOG_COLUMNS)
LOG_STATUSES = ("pending", "running", "completed", "failed", "skipped", "timeout")
# What a list of executions shows (a table, a tree, a timeline): every column but the
# JSON payloads, which can be kilobytes a row and are read only by exports and `show`.
SUMMARY_COLUMNS = tuple(c for c in LOG_COLUMNS if c not in ("result_data", "context_snapshot"))
FETCH_BATCH = 500  # rows per fetch: memory stays flat, the per-fetch cost is spread
# Export lines per fetch (about 1.4 KB each): one join and one write a batch, small
# enough to stay in the CPU cache (250 measured a little faster than 1,000).
LINE_BATCH = 250


@dataclass
class LogFilter:
    statuses: list[str] = field(default_factory=list)
    step_order: int | None = None
    round_index: int | None = None
    since: datetime | None = None
    last: int | None = None
    limit: int | None = None
    offset: int = 0
    # Only rows up to this execution_order (``--follow`` prints the rest as they come).
    until_order: int | None = None

    def matches(self, row: dict[str, Any], step_ids: list[int] | None) -> bool:
        """The filter in Python, for rows that ``--follow`` reads one poll at a time."""
        if self.statuses and row.get("status") not in self.statuses:
            return False
        if self.round_index is not None and row.get("round_index") != self.round_index:
            return False
        if self.since is not None:
            created = row.get("created_at")
            if created is None or created < self.since:
                return False
        return step_ids is None or row.get("step_id") in step_ids


def step_info(step_snapshot: str | None) -> dict[str, Any]:
    """order / speaker / task_type of the step as it ran, from the log's snapshot."""
    if not step_snapshot:
        return {}
    try:
        data = json.loads(step_snapshot)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        "order": data.get("order"),
        "speaker": data.get("speaker_role_ref"),
        "target": data.get("target_role_ref"),
        "task_type": data.get("task_type"),
    }


def step_ids_for_order(tx: StepTx, session_id: int, order: int) -> list[int]:
    """Ids of the steps that had ``order`` in the session's snapshot (as the session ran)."""
    tx.cur.execute(
        f"SELECT flow_snapshot FROM sessions WHERE id = {tx.p('id')}", {"id": session_id}
    )
    found = tx.cur.fetchone()
    data = loads_json(found[0] if found else None, {})
    steps = data.get("steps", []) if isinstance(data, dict) else []
    ids = []
    for step in steps:
        if (
            isinstance(step, dict)
            and str(step.get("order")) == str(order)
            and step.get("id") is not None
        ):
            ids.append(int(step["id"]))
    return ids


def _where(tx: StepTx, session_id: int, flt: LogFilter) -> tuple[str, dict[str, Any]]:
    p = tx.p
    conds = [f"session_id = {p('sid')}"]
    params: dict[str, Any] = {"sid": session_id}
    if flt.statuses:
        conds.append(f"status IN ({', '.join(p(f's{i}') for i in range(len(flt.statuses)))})")
        params.update({f"s{i}": s for i, s in enumerate(flt.statuses)})
    if flt.round_index is not None:
        conds.append(f"round_index = {p('round')}")
        params["round"] = flt.round_index
    if flt.since is not None:
        conds.append(f"created_at >= {p('since')}")
        params["since"] = flt.since
    if flt.until_order is not None:
        conds.append(f"execution_order <= {p('until')}")
        params["until"] = flt.until_order
    if flt.step_order is not None:
        ids = step_ids_for_order(tx, session_id, flt.step_order)
        if ids:
            conds.append(f"step_id IN ({', '.join(p(f'i{n}') for n in range(len(ids)))})")
            params.update({f"i{n}": i for n, i in enumerate(ids)})
        else:
            conds.append("1 = 0")  # no step had that order: no row matches
    return " AND ".join(conds), params


def _converters(columns: Sequence[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    """(position, conversion) of each column SQLAlchemy would convert, decided once."""
    dates = DATETIME_COLUMNS["step_execution_logs"]
    flags = BOOLEAN_COLUMNS["step_execution_logs"]
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for i, name in enumerate(columns):
        if name in dates:
            out.append((i, _as_datetime))
        elif name in flags:
            out.append((i, _as_bool))
    return out


def _as_bool(value: Any) -> Any:
    return value if value is None else bool(value)


def _log_query(
    tx: StepTx, session_id: int, flt: LogFilter, select: str
) -> tuple[str, dict[str, Any]]:
    """The SQL (and its parameters) of ``select`` over the filtered rows, oldest first.

    ``--last N`` first finds the N-th newest matching execution_order by walking the
    (session_id, execution_order) index backwards, then streams forwards from it: both
    are index range scans, with no sort and nothing held in memory.
    """
    where, params = _where(tx, session_id, flt)
    p = tx.p
    sql = f"SELECT {select} FROM step_execution_logs WHERE {where}"
    if flt.last is not None:
        tx.cur.execute(
            f"SELECT execution_order FROM step_execution_logs WHERE {where} "
            f"ORDER BY execution_order DESC LIMIT 1 OFFSET {p('skip')}",
            {**params, "skip": flt.last - 1},
        )
        bound = tx.cur.fetchone()
        if bound is not None:
            sql += f" AND execution_order >= {p('bound')}"
            params["bound"] = bound[0]
        sql += " ORDER BY execution_order"
    else:
        sql += " ORDER BY execution_order"
        if flt.limit is not None:
            sql += f" LIMIT {p('limit')}"
            params["limit"] = flt.limit
        elif flt.offset and tx.sqlite:
            sql += " LIMIT -1"  # SQLite takes OFFSET only after a LIMIT
        if flt.offset:
            sql += f" OFFSET {p('offset')}"
            params["offset"] = flt.offset
    return sql, params


def _stream(tx: StepTx, sql: str, params: dict[str, Any], batch: int) -> Generator[Any, None, None]:
    # A server-side cursor on PostgreSQL: psycopg would otherwise fetch every row at once.
    cur = tx.raw.cursor() if tx.sqlite else tx.raw.cursor(name=f"flowcli_logs_{uuid.uuid4().hex}")
    try:
        cur.execute(sql, params)
        while rows := cur.fetchmany(batch):
            yield rows
    finally:
        cur.close()


def iter_log_batches(
    tx: StepTx,
    session_id: int,
    flt: LogFilter | None = None,
    *,
    columns: Sequence[str] = LOG_COLUMNS,
    batch: int = FETCH_BATCH,
) -> Generator[list[tuple[Any, ...]], None, None]:
    """Log rows oldest first, in batches of tuples of ``columns`` as the driver returns
    them (the exports' Python path encodes them column by column:
    flowcli.render.exports)."""
    sql, params = _log_query(tx, session_id, flt or LogFilter(), ", ".join(columns))
    yield from _stream(tx, sql, params, batch)


def iter_line_batches(
    tx: StepTx,
    session_id: int,
    fmt: str,
    flt: LogFilter | None = None,
    *,
    columns: Sequence[str] = LOG_COLUMNS,
    batch: int = LINE_BATCH,
) -> Generator[list[tuple[int, bytes]], None, None]:
    """SQLite only: the filtered rows oldest first, in batches of (id, the row's export
    line as bytes, built by SQLite: flowcli.db.export_lines). The bytes are not decoded
    here: a line may hold the BAD marker or stored text that is not UTF-8, and the
    writer sends those rows back to Python (fetch_log_rows)."""
    from flowcli.db.export_lines import line_sql, reals_as_printf

    assert tx.sqlite, "export lines are built by SQLite"
    line = line_sql(columns, fmt, reals_cast=reals_as_printf(tx.cur))
    select = f"id, CAST({line} AS BLOB)"
    sql, params = _log_query(tx, session_id, flt or LogFilter(), select)
    yield from _stream(tx, sql, params, batch)


def fetch_log_rows(
    tx: StepTx, ids: Sequence[int], *, columns: Sequence[str] = LOG_COLUMNS
) -> dict[int, tuple[Any, ...]]:
    """The rows with these ids as tuples of ``columns`` as the driver returns them, by
    id: the few an export's SQL left to Python. Read in the same transaction as the
    lines, so they are the same rows."""
    found: dict[int, tuple[Any, ...]] = {}
    cur = tx.raw.cursor()
    try:
        for start in range(0, len(ids), 500):  # well under any bound on parameters
            chunk = list(ids[start : start + 500])
            marks = ", ".join(tx.p(f"i{n}") for n in range(len(chunk)))
            cur.execute(
                f"SELECT id, {', '.join(columns)} FROM step_execution_logs WHERE id IN ({marks})",
                {f"i{n}": i for n, i in enumerate(chunk)},
            )
            for row in cur.fetchall():
                found[row[0]] = tuple(row[1:])
    finally:
        cur.close()
    return found


def iter_log_rows(
    tx: StepTx,
    session_id: int,
    flt: LogFilter | None = None,
    *,
    columns: Sequence[str] = LOG_COLUMNS,
    batch: int = FETCH_BATCH,
) -> Generator[dict[str, Any], None, None]:
    """Log rows oldest first (iter_log_batches), each a dict of ``columns`` typed as
    SQLAlchemy returned them (datetimes, booleans)."""
    names = tuple(columns)
    convert = _converters(names)
    for rows in iter_log_batches(tx, session_id, flt, columns=names, batch=batch):
        for found in rows:
            values = list(found)
            for i, fn in convert:
                values[i] = fn(values[i])
            yield dict(zip(names, values, strict=True))
