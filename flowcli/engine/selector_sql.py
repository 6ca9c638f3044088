"""The SQL side of a ``--where`` selector (flowcli.engine.selector): the session fields
a selector can name, each as the SQL expression whose value both SQL and the sandbox
read, and the translation of an expression tree into a WHERE clause that means what
Python would compute, errors included.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    Text,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    type_coerce,
)

from flowcli.db.log_queries import FAILURE_STATUSES
from flowcli.db.tables import flow_templates_table, sessions_table, step_logs_table

sessions_t = sessions_table
_SQL_INT_LIMIT = 2**63 - 1


@dataclass(frozen=True)
class SelectorField:
    """One name a selector can use. ``kind``: int, text, time (text, YYYY-MM-DD HH:MM:SS.ffffff), or
    vars / step, which only the sandbox evaluates."""

    name: str
    kind: str
    help: str


SELECTOR_FIELDS: dict[str, SelectorField] = {
    f.name: f
    for f in (
        SelectorField("id", "int", "the session's id"),
        SelectorField("status", "text", "not_started, running, paused, finished, failed, …"),
        SelectorField("flow", "text", "the flow's name"),
        SelectorField("flow_id", "int", "the flow's id (flow_template_id)"),
        SelectorField("topic", "text", "the session's topic"),
        SelectorField("created_at", "time", "when the session was created"),
        SelectorField("updated_at", "time", "when it last changed"),
        SelectorField("ended_at", "time", "when it ended (None while it has not)"),
        SelectorField("executed_steps", "int", "steps executed so far"),
        SelectorField("step", "step", "the current step's order (None when there is none)"),
        SelectorField("step_id", "int", "the current step's id (current_step_id)"),
        SelectorField("round", "int", "the current round"),
        SelectorField("error_reason", "text", "why the session failed"),
        SelectorField("last_error", "text", "the newest failed execution's error message"),
        SelectorField("last_error_type", "text", "the newest failed execution's result_type"),
        SelectorField("vars", "vars", "the session variables (a dict)"),
    )
}
_SQL_KINDS = ("int", "text", "time")


# --------------------------------------------------------------------------- SQL values
def field_sql(name: str, dialect: str) -> Any:
    """The SQL expression whose value is field ``name``: the sandbox reads this value and
    the WHERE clause compares it, so the two can never disagree about the data."""
    s = sessions_t
    sqlite = dialect == "sqlite"

    def integer(column: Any) -> Any:
        # SQLite stores anything anywhere; a text in an INTEGER column reads as None.
        if sqlite:
            column = case((func.typeof(column).in_(("integer", "real")), column))
        return type_coerce(column, Integer)

    def text(column: Any) -> Any:
        if sqlite:
            column = case((func.typeof(column) == "text", column))
        return type_coerce(column, Text)

    def moment(column: Any) -> Any:
        if sqlite:  # stored as text in TIME_FORMAT by SQLAlchemy (flowcli's and MRC's)
            return text(column)
        return type_coerce(func.to_char(column, "YYYY-MM-DD HH24:MI:SS.US"), Text)

    def last_failure(column: Any) -> Any:
        logs = step_logs_table
        return type_coerce(
            select(text(column))
            .where(logs.c.session_id == s.c.id, logs.c.status.in_(FAILURE_STATUSES))
            .order_by(logs.c.execution_order.desc())
            .limit(1)
            .correlate(s)
            .scalar_subquery(),
            Text,
        )

    if name == "id":
        return s.c.id
    if name == "status":
        return type_coerce(func.coalesce(func.nullif(text(s.c.status), ""), "not_started"), Text)
    if name == "flow":
        f = flow_templates_table
        return type_coerce(
            select(text(f.c.name))
            .where(f.c.id == s.c.flow_template_id)
            .correlate(s)
            .scalar_subquery(),
            Text,
        )
    if name == "flow_id":
        return integer(s.c.flow_template_id)
    if name == "topic":
        return text(s.c.topic)
    if name in ("created_at", "updated_at", "ended_at"):
        return moment(s.c[name])
    if name == "executed_steps":
        return type_coerce(func.coalesce(integer(s.c.executed_steps_count), 0), Integer)
    if name == "step_id":
        return integer(s.c.current_step_id)
    if name == "round":
        return integer(s.c.current_round)
    if name == "error_reason":
        return text(s.c.error_reason)
    if name == "last_error":
        return last_failure(step_logs_table.c.error_message)
    if name == "last_error_type":
        return last_failure(step_logs_table.c.result_type)
    if name == "vars":
        return text(s.c.variables)
    if name == "step":
        return text(s.c.flow_snapshot)
    raise KeyError(name)


# --------------------------------------------------------------------------- translation
@dataclass(frozen=True)
class _Tr:
    """A node in SQL. Exact: ``truthy`` holds when it evaluates truthy and ``error`` when it
    raises (neither is ever NULL). Inexact: ``truthy`` is a condition every selected row
    meets (or None: nothing known), and the sandbox decides."""

    exact: bool
    truthy: Any
    error: Any = None

    def falsy(self) -> Any:
        return and_(not_(self.truthy), not_(self.error))


_UNKNOWN = _Tr(False, None)


def _exact(truthy: Any, error: Any = None) -> _Tr:
    return _Tr(True, truthy, false() if error is None else error)


def _known(condition: Any) -> Any:
    """``condition``, with NULL (a NULL operand) read as false: NOT must never meet NULL."""
    return func.coalesce(condition, false())


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str
    sql: Any


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Sequence:
    values: tuple[Any, ...]


_MIRRORED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.Eq,
    ast.NotEq: ast.NotEq,
    ast.Lt: ast.Gt,
    ast.Gt: ast.Lt,
    ast.LtE: ast.GtE,
    ast.GtE: ast.LtE,
}
_ORDERING: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def _sql_literal(value: Any) -> bool:
    """Whether a constant can be a bound parameter meaning exactly what it means in Python."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_SQL_INT_LIMIT <= value <= _SQL_INT_LIMIT
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, str):
        # PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded at all.
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return False


def _of_kind(value: Any, kind: str) -> bool:
    """Whether ``value`` can equal a value of a field of ``kind`` (``1 == True`` in Python)."""
    if kind == "int":
        return isinstance(value, (int, float))
    return isinstance(value, str)


class Translator:
    """Turns a validated selector tree into SQL that means what Python would compute."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.sqlite = dialect == "sqlite"
        self._fields: dict[str, Any] = {}

    def field(self, name: str) -> Any:
        if name not in self._fields:
            self._fields[name] = field_sql(name, self.dialect)
        return self._fields[name]

    # --- operands -----------------------------------------------------------------
    def operand(self, node: ast.AST) -> _Field | _Literal | _Sequence | None:
        if isinstance(node, ast.Name):
            spec = SELECTOR_FIELDS.get(node.id)
            if spec is not None and spec.kind in _SQL_KINDS:
                return _Field(spec.name, spec.kind, self.field(spec.name))
            return None
        value = self.constant(node)
        if value is not _NOT_CONSTANT:
            return _Literal(value) if _sql_literal(value) else None
        if isinstance(node, (ast.List, ast.Tuple)):
            values = []
            for element in node.elts:
                item = self.constant(element)
                if item is _NOT_CONSTANT or not _sql_literal(item):
                    return None
                values.append(item)
            return _Sequence(tuple(values))
        return None

    @staticmethod
    def constant(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)
        ):
            value: Any = node.operand.value
            return -value if isinstance(node.op, ast.USub) else value
        return _NOT_CONSTANT

    def bind(self, value: Any, kind: str) -> Any:
        if kind == "int":
            if isinstance(value, float):
                return literal(value, Float)
            return literal(int(value), BigInteger)
        return literal(value, Text)

    # --- nodes ----------------------------------------------------------------------
    def node(self, node: ast.AST) -> _Tr:
        if isinstance(node, ast.BoolOp):
            parts = [self.node(value) for value in node.values]
            return self.both(parts) if isinstance(node.op, ast.And) else self.either(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.node(node.operand)
            return _exact(inner.falsy(), inner.error) if inner.exact else _UNKNOWN
        if isinstance(node, ast.IfExp):
            return self.choice(self.node(node.test), self.node(node.body), self.node(node.orelse))
        if isinstance(node, ast.Compare):
            return self.comparison(node)
        operand = self.operand(node)
        if isinstance(operand, _Literal):
            return _exact(true() if operand.value else false())
        if isinstance(operand, _Field):
            zero = self.bind(0, "int") if operand.kind == "int" else self.bind("", "text")
            return _exact(_known(operand.sql != zero))
        return _UNKNOWN

    @staticmethod
    def both(parts: Sequence[_Tr]) -> _Tr:
        if all(p.exact for p in parts):
            truthy, error = parts[0].truthy, parts[0].error
            for part in parts[1:]:
                # `a and b`: a raises, or a is truthy and b raises
                error = or_(error, and_(truthy, part.error))
                truthy = and_(truthy, part.truthy)
            return _Tr(True, truthy, error)
        known = [p.truthy for p in parts if p.truthy is not None]
        return _Tr(False, and_(*known) if known else None)

    @staticmethod
    def either(parts: Sequence[_Tr]) -> _Tr:
        if all(p.exact for p in parts):
            current = parts[0]
            for part in parts[1:]:
                # `a or b`: b is evaluated only when a is falsy without raising
                falsy = current.falsy()
                current = _Tr(
                    True,
                    or_(current.truthy, and_(falsy, part.truthy)),
                    or_(current.error, and_(falsy, part.error)),
                )
            return current
        if any(p.truthy is None for p in parts):
            return _UNKNOWN
        return _Tr(False, or_(*[p.truthy for p in parts]))

    @staticmethod
    def choice(test: _Tr, body: _Tr, orelse: _Tr) -> _Tr:
        if test.exact and body.exact and orelse.exact:
            falsy = test.falsy()
            return _Tr(
                True,
                or_(and_(test.truthy, body.truthy), and_(falsy, orelse.truthy)),
                or_(test.error, and_(test.truthy, body.error), and_(falsy, orelse.error)),
            )
        if body.truthy is None or orelse.truthy is None:
            return _UNKNOWN
        return _Tr(False, or_(body.truthy, orelse.truthy))

    def comparison(self, node: ast.Compare) -> _Tr:
        # `a < b < c` is `a < b and b < c`, b evaluated once (operands here are pure)
        operands = [node.left, *node.comparators]
        parts = []
        for left, op, right in zip(operands, node.ops, operands[1:], strict=False):
            pair = self.pair(self.operand(left), op, self.operand(right))
            if pair is None:
                return _UNKNOWN
            parts.append(pair)
        return self.both(parts)

    def pair(self, left: Any, op: ast.cmpop, right: Any) -> _Tr | None:
        if left is None or right is None:
            return None
        if isinstance(op, (ast.In, ast.NotIn)):
            return self.membership(left, right, negate=isinstance(op, ast.NotIn))
        if isinstance(op, (ast.Is, ast.IsNot)):
            # only `field is None` means the same in SQL; identity of other values does not
            if isinstance(right, _Literal) and isinstance(left, _Field) and right.value is None:
                missing = left.sql.is_(None)
                return _exact(missing if isinstance(op, ast.Is) else not_(missing))
            return None
        if isinstance(left, _Literal) and isinstance(right, _Field):
            left, right, op = right, left, _MIRRORED[type(op)]()
        if not (isinstance(left, _Field) and isinstance(right, _Literal)):
            return None
        return self.compare(left, op, right.value)

    def compare(self, field: _Field, op: ast.cmpop, value: Any) -> _Tr:
        column = field.sql
        missing = column.is_(None)
        if isinstance(op, (ast.Eq, ast.NotEq)):
            equal = isinstance(op, ast.Eq)
            if value is None:
                return _exact(missing if equal else not_(missing))
            if not _of_kind(value, field.kind):
                return _exact(false() if equal else true())  # 'a' == 5 is False, not an error
            bound = self.bind(value, field.kind)
            found = _known(column == bound)
            if equal:
                return _exact(self.with_status_index(field, [value], found))
            return _exact(not_(found))  # None != 'a' is True
        if value is None or not _of_kind(value, field.kind):
            return _exact(false(), true())  # None < x and 'a' < 5 raise TypeError
        if field.kind != "int" and not self.sqlite:
            column = column.collate("C")  # code-point order, as Python compares text
        ordered = _ORDERING[type(op)](column, self.bind(value, field.kind))
        return _exact(_known(ordered), missing)

    def membership(self, left: Any, right: Any, *, negate: bool) -> _Tr | None:
        if isinstance(right, _Field):  # `'x' in field`
            if not isinstance(left, _Literal):
                return None
            if right.kind == "int" or not isinstance(left.value, str):
                return _exact(false(), true())  # `x in 5`, `5 in 'abc'`, `x in None` raise
            found = _known(self.contains(right.sql, left.value))
            missing = right.sql.is_(None)
            return _exact(and_(not_(missing), not_(found)) if negate else found, missing)
        if not isinstance(left, _Field):
            return None
        missing = left.sql.is_(None)
        if isinstance(right, _Sequence):  # `field in ['a', 'b']` compares with ==
            same = [v for v in right.values if v is not None and _of_kind(v, left.kind)]
            options = []
            if any(v is None for v in right.values):
                options.append(missing)
            if same:
                inside = _known(left.sql.in_([self.bind(v, left.kind) for v in same]))
                options.append(self.with_status_index(left, same, inside))
            found = or_(*options) if options else false()
            return _exact(not_(found) if negate else found)
        if isinstance(right, _Literal) and isinstance(right.value, str):  # `field in 'abc'`
            if left.kind == "int":
                return _exact(false(), true())
            found = _known(self.contained(right.value, left.sql))
            return _exact(and_(not_(missing), not_(found)) if negate else found, missing)
        return None

    def contains(self, haystack: Any, needle: str) -> Any:
        # SQLite's LIKE ignores ASCII case, Python's `in` does not: instr() is exact there.
        # PostgreSQL's LIKE is exact; the needle's % and _ are escaped.
        if self.sqlite:
            return func.instr(haystack, self.bind(needle, "text")) > 0
        return haystack.contains(needle, autoescape=True)

    def contained(self, haystack: str, needle: Any) -> Any:
        function = func.instr if self.sqlite else func.strpos
        return function(self.bind(haystack, "text"), needle) > 0

    def with_status_index(self, field: _Field, values: Sequence[Any], clause: Any) -> Any:
        """Add the raw ``status = …`` term (implied by ``clause``) so the status index is
        used; it would not be for the value as SQLite reads it (empty or NULL counts as
        not_started)."""
        if field.name != "status" or any(v in ("", "not_started") for v in values):
            return clause
        raw = sessions_t.c.status
        term = raw == values[0] if len(values) == 1 else raw.in_(list(values))
        return and_(term, clause)


_NOT_CONSTANT = object()
