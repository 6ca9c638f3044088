"""Selecting sessions with a flow expression: the ``--where`` of ``session list|count`` and
of the batch actions (flowcli.engine.batch).

A selector is the flow expression language (flowcli.sandbox.expressions: the same parser,
sandbox and limits) over each session's fields (SELECTOR_FIELDS), plus ``ago('7d')``.
What SQL can answer exactly (a field compared with a literal, ``in`` on text or a list,
``and``/``or``/``not``, ``… if … else …``) becomes a WHERE clause; the rest runs in the
sandbox for each row that clause lets through. Both read the same SQL expression for each
field, and the translation (flowcli.engine.selector_sql) follows Python's rules, errors
included (``None < 3`` raises, so such a session is not selected), so SQL only ever
narrows: it never changes which sessions match. tests/engine/test_selector.py holds the
two paths equal (Hypothesis).
"""

from __future__ import annotations

import ast
import functools
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from flowcli.db.session_reads import SESSION_LIST_COLUMNS
from flowcli.db.session_store import utcnow
from flowcli.db.tables import sessions_table
from flowcli.engine.selector_sql import SELECTOR_FIELDS, SelectorField, Translator, field_sql
from flowcli.errors import ExpressionError
from flowcli.sandbox.expressions import Expression, compile_expression
from flowcli.sandbox.limits import MAX_EXPRESSION_LENGTH

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

    from flowcli.db.connection import Database

__all__ = [
    "SELECTOR_FIELDS",
    "Selector",
    "SelectorField",
    "compile_selector",
    "find_sessions",
    "parse_duration",
]

sessions_t = sessions_table

# The sandbox part of a selection may run this long in total before it is refused: each
# evaluation is bounded by the sandbox, and this bounds their number times their cost.
SANDBOX_DEADLINE_S = 120.0
_NAMES = frozenset(SELECTOR_FIELDS)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how every time field reads (naive UTC, as stored)
MAX_AGO = timedelta(days=36_600)  # about a hundred years


# --------------------------------------------------------------------------- ago()
_DURATION_PART = re.compile(r"\s*(\d{1,6})\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``'7d'``, ``'90m'``, ``'1d 12h'`` (s, m, h, d, w) as a timedelta; ExpressionError else."""
    parts: list[re.Match[str]] = []
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None or not match.group(0):
            parts = []
            break
        parts.append(match)
        position = match.end()
    if not parts:
        raise ExpressionError(
            f"ago({text[:40]!r}): give a duration such as '7d', '12h', '90m' or '1d 12h' "
            "(units s, m, h, d, w)"
        )
    total = timedelta()
    for match in parts:
        total += timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        if total > MAX_AGO:
            raise ExpressionError(f"ago({text[:40]!r}): at most {MAX_AGO.days:,} days")
    return total


def _rewrite_ago(text: str, now: datetime) -> str:
    """``text`` with each ``ago('…')`` replaced by the time it names, as a text literal.

    The sandbox has no ``ago`` function (its allowlist is fixed); the moment is known when
    the selector is compiled, so a constant is all it needs to be.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return text  # compile_expression reports the problem in its own words
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id != "ago":
                continue
            arg = node.args[0] if len(node.args) == 1 else None
            if node.keywords or not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise ExpressionError("ago() takes one duration in quotes, such as ago('7d')")
            moment = now - parse_duration(arg.value)
            calls.append((node, repr(moment.strftime(TIME_FORMAT))))
    if not calls:
        return text
    # ast positions are UTF-8 byte offsets within a line.
    data = text.encode("utf-8")
    line_starts = [0]
    for index, byte in enumerate(data):
        if byte == 0x0A:
            line_starts.append(index + 1)

    def offset(line: int | None, column: int | None) -> int:
        assert line is not None and column is not None
        return line_starts[line - 1] + column

    spans = sorted(
        (
            (offset(n.lineno, n.col_offset), offset(n.end_lineno, n.end_col_offset), new)
            for n, new in calls
        ),
        reverse=True,
    )
    for start, end, new in spans:
        data = data[:start] + new.encode("utf-8") + data[end:]
    return data.decode("utf-8")


# --------------------------------------------------------------------------- sandbox values
def _parse_vars(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=64)
def _step_orders(snapshot: str) -> dict[int, int]:
    """{step id: order} of a flow snapshot; sessions of one flow share the same text."""
    try:
        data = json.loads(snapshot)
    except (ValueError, RecursionError):
        return {}
    steps = data.get("steps") if isinstance(data, dict) else None
    orders: dict[int, int] = {}
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict):
            sid, order = step.get("id"), step.get("order")
            if type(sid) is int and type(order) is int:
                orders[sid] = order
    return orders


# --------------------------------------------------------------------------- the selector
@dataclass(frozen=True)
class _Plan:
    clause: Any  # None: no SQL narrowing at all
    exact: bool


@dataclass
class Selector:
    """A compiled ``--where`` expression. Build with compile_selector."""

    source: str
    now: datetime
    expression: Expression
    tree: ast.Expression
    deadline_s: float = SANDBOX_DEADLINE_S

    def __post_init__(self) -> None:
        self._plans: dict[str, _Plan] = {}

    @property
    def fields(self) -> frozenset[str]:
        return self.expression.names_used

    def plan(self, dialect: str) -> _Plan:
        """The WHERE clause for ``dialect``, and whether it is the whole answer."""
        if dialect not in self._plans:
            translated = Translator(dialect).node(self.tree.body)
            self._plans[dialect] = _Plan(translated.truthy, translated.exact)
        return self._plans[dialect]

    def evaluated_in(self, dialect: str) -> str:
        """'sql', 'sql+sandbox' or 'sandbox': where the selection is decided."""
        plan = self.plan(dialect)
        if plan.exact:
            return "sql"
        return "sql+sandbox" if plan.clause is not None else "sandbox"

    # --- answers ---------------------------------------------------------------------
    def count(self, conn: Connection, *, sandbox_only: bool = False) -> int:
        plan = self.plan(conn.dialect.name)
        if plan.exact and not sandbox_only:
            stmt = select(func.count()).select_from(sessions_t).where(plan.clause)
            return int(conn.execute(stmt).scalar_one())
        return sum(1 for _ in self.rows(conn, [sessions_t.c.id], sandbox_only=sandbox_only))

    def ids(
        self, conn: Connection, *, limit: int | None = None, sandbox_only: bool = False
    ) -> list[int]:
        rows = self.rows(conn, [sessions_t.c.id], limit=limit, sandbox_only=sandbox_only)
        return [int(row[0]) for row in rows]

    def matches(self, conn: Connection, session_id: int) -> bool:
        """Whether one session matches now (batches check again right before acting)."""
        rows = self.rows(conn, [sessions_t.c.id], where=[sessions_t.c.id == session_id])
        return any(True for _ in rows)

    def rows(
        self,
        conn: Connection,
        columns: Sequence[Any],
        *,
        where: Sequence[Any] = (),
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        sandbox_only: bool = False,
    ) -> Iterator[Row[Any]]:
        """The matching sessions' ``columns``, in id order (or newest first), streamed;
        ``offset`` matches are passed over before ``limit`` are given."""
        plan = self.plan(conn.dialect.name)
        clauses = list(where)
        order = sessions_t.c.id.desc() if newest_first else sessions_t.c.id
        if plan.clause is not None and not sandbox_only:
            clauses.append(plan.clause)
        if plan.exact and not sandbox_only:
            stmt = select(*columns).where(*clauses).order_by(order)
            if offset:
                stmt = stmt.offset(offset)
            if limit is not None:
                stmt = stmt.limit(limit)
            yield from conn.execute(stmt)
            return
        if limit is not None and limit <= 0:
            return
        yield from self._sandboxed(conn, columns, clauses, limit, offset, order)

    def _sandboxed(
        self,
        conn: Connection,
        columns: Sequence[Any],
        clauses: list[Any],
        limit: int | None,
        offset: int,
        order: Any,
    ) -> Iterator[Row[Any]]:
        dialect = conn.dialect.name
        used = sorted(self.fields)
        extra: list[Any] = []
        for name in used:
            extra.append(field_sql(name, dialect).label(f"_f_{name}"))
        if "step" in used:
            extra.append(field_sql("step_id", dialect).label("_f_step_id_for_step"))
        stmt = select(*columns, *extra).where(*clauses).order_by(order)
        width = len(columns)
        started = time.monotonic()
        found = 0
        passed_over = 0
        result = conn.execution_options(yield_per=500).execute(stmt)
        for seen, row in enumerate(result):
            if seen % 256 == 255 and time.monotonic() - started > self.deadline_s:
                result.close()
                raise ExpressionError(
                    f"--where {self.source[:60]!r}: the sandbox part ran past "
                    f"{self.deadline_s:g} s after {seen + 1:,} sessions; narrow it with "
                    "conditions SQL can answer (status, flow, times, …: docs/batch.md)"
                )
            if self._evaluate(dict(zip(used, row[width : width + len(used)], strict=True)), row):
                if passed_over < offset:
                    passed_over += 1
                    continue
                found += 1
                yield row
                if limit is not None and found >= limit:
                    result.close()
                    return

    def _evaluate(self, values: dict[str, Any], row: Row[Any]) -> bool:
        if "vars" in values:
            values["vars"] = _parse_vars(values["vars"])
        if "step" in values:
            snapshot, step_id = values["step"], row[-1]
            values["step"] = (
                _step_orders(snapshot).get(step_id) if isinstance(snapshot, str) else None
            )
        try:
            return self.expression.evaluate_bool(values)
        except ExpressionError:
            return False  # like SQL's NULL: a session the expression fails on is not selected


def compile_selector(
    source: str, *, now: datetime | None = None, deadline_s: float = SANDBOX_DEADLINE_S
) -> Selector:
    """Validate ``source`` once; ``ago()`` counts back from ``now`` (default: now, UTC)."""
    if not isinstance(source, str):
        raise ExpressionError(f"--where must be text, not {type(source).__name__}")
    moment = now if now is not None else utcnow()
    text = source.strip()
    if "ago" in text and len(text) <= MAX_EXPRESSION_LENGTH:
        text = _rewrite_ago(text, moment)
    expression = compile_expression(text, allowed_names=_NAMES)
    # Valid now (depth and size bounded), so parsing it again for SQL is cheap and safe.
    tree = ast.parse(expression.source.strip(), mode="eval")
    return Selector(source, moment, expression, tree, deadline_s)


# --------------------------------------------------------------------------- listing
# The columns `session list` shows, with or without --where (session_reads).
LIST_COLUMNS = SESSION_LIST_COLUMNS


def find_sessions(
    db: Database,
    where: str,
    *,
    status: Sequence[str] | None = None,
    limit: int | None = None,
    flow_id: int | None = None,
    since: datetime | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """``session list --where``: the matching sessions, as list_sessions returns them, with
    the same status, flow, creation-time, order and paging options."""
    from flowcli.engine.lifecycle import SESSION_STATUSES
    from flowcli.errors import UsageError

    selector = compile_selector(where)
    clauses: list[Any] = []
    if status:
        bad = [s for s in status if s not in SESSION_STATUSES]
        if bad:
            raise UsageError(
                f"unknown status {bad[0]!r}; choose from {', '.join(SESSION_STATUSES)}"
            )
        clauses.append(sessions_t.c.status.in_(list(status)))
    if flow_id is not None:
        clauses.append(sessions_t.c.flow_template_id == flow_id)
    if since is not None:
        clauses.append(sessions_t.c.created_at >= since)
    columns = [sessions_t.c[name] for name in LIST_COLUMNS]
    with db.read() as conn:
        rows = selector.rows(
            conn, columns, where=clauses, limit=limit, offset=offset, newest_first=newest_first
        )
        return [dict(zip(LIST_COLUMNS, row[: len(LIST_COLUMNS)], strict=True)) for row in rows]


def count_sessions(db: Database, where: str) -> dict[str, Any]:
    """``session count --where``: how many sessions match, and where it was decided."""
    selector = compile_selector(where)
    with db.read() as conn:
        return {
            "count": selector.count(conn),
            "where": where,
            "evaluated": selector.evaluated_in(conn.dialect.name),
        }
