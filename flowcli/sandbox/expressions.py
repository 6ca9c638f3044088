"""The expression language of flows: an evaluator of our own over Python's ``ast``.

The names in EXPRESSION_NAMES; str/int/float/True/False/None, list and tuple literals;
``+ - * / // % **``, ``and or not``, ``== != < <= > >= in not in is is not``,
``a if c else b``, subscripts and slices, f-strings without format specs, list comprehensions
and generator expressions (at most 3 ``for``). Functions (ALLOWED_FUNCTIONS, positional
arguments only): abs all any bool float int len max min sorted str sum. Methods: str: lower
upper title capitalize strip lstrip rstrip startswith endswith count find split replace join
removeprefix removesuffix isdigit isalpha; dict: get keys values items; list/tuple: count
index. ``last.content`` reads a MessageView field, ``vars.mood`` a dict key (``vars['mood']``
and ``vars.get('mood')`` work too). Nothing starting with ``_`` and no ``format`` ever.

flowcli owns this evaluator outright (no simpleeval): a checker admits the subset above
before anything runs, and the evaluator handles exactly the node types the checker admits,
every operation going through the bounded operations and the budget. This module never
imports Jinja2.
"""

from __future__ import annotations

import ast
import functools
import operator as op
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from flowcli.errors import ExpressionError
from flowcli.sandbox import limits
from flowcli.sandbox.budget import (
    CURRENT_BUDGET,
    SEQUENCES,
    Budget,
    charge,
    charge_hash,
    check_length,
    iterate,
    refuse,
    spend,
    to_text,
    type_name,
)
from flowcli.sandbox.failures import checked_source, describe, label, reraise_foreign
from flowcli.sandbox.names import (
    EXPRESSION_NAMES,
    FORMAT_METHODS,
    MESSAGE_FIELDS,
    PRIVATE_HINT,
    MessageView,
)
from flowcli.sandbox.operations import (
    ALLOWED_FUNCTIONS,
    METHOD_NAMES,
    binop,
    call_method,
    compare,
)

__all__ = [
    "ALLOWED_FUNCTIONS",
    "EXPRESSION_NAMES",
    "Expression",
    "MessageView",
    "compile_expression",
    "validate_expression",
]


def _syntax_message(exc: SyntaxError) -> str:
    where = ""
    if exc.offset:
        line = exc.lineno or 1
        where = f" at column {exc.offset}" if line == 1 else f" at line {line}, col {exc.offset}"
    detail = exc.msg or "invalid syntax"
    if detail.startswith("invalid syntax"):
        detail = detail[len("invalid syntax") :].lstrip(". ")
    return f"invalid syntax{where}" + (f" ({detail})" if detail else "")


# --------------------------------------------------------------------------- static checks
_BINARY_OPERATORS: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_UNARY_OPERATORS: dict[type[ast.AST], Callable[[Any], Any]] = {
    ast.Not: op.not_,
    ast.USub: op.neg,
    ast.UAdd: op.pos,
}
_COMPARE_OPERATORS: dict[type[ast.AST], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_REFUSED_OPERATORS: dict[type[ast.AST], str] = {
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.MatMult: "@",
    ast.Invert: "~",
}
_NODE_NAMES = {
    "Lambda": "lambda",
    "NamedExpr": "assignment (:=)",
    "Dict": "a dict literal",
    "Set": "a set literal",
    "DictComp": "a dict comprehension",
    "SetComp": "a set comprehension",
    "Starred": "unpacking with *",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield from",
}


def _refuse_private(kind: str, name: str) -> None:
    if name.startswith("_"):
        refuse(f"{kind} {name!r} is not allowed ({PRIVATE_HINT})")


class _ExpressionChecker:
    """Admits only the expression subset described in the module docstring."""

    def __init__(self, allowed_names: frozenset[str]) -> None:
        self.allowed_names = allowed_names
        self.used: set[str] = set()
        self.scopes: list[set[str]] = []
        self.comprehension_depth = 0

    def check(self, node: ast.AST) -> None:
        visitor = getattr(self, f"_check_{type(node).__name__}", None)
        if visitor is None:
            name = type(node).__name__
            refuse(f"{_NODE_NAMES.get(name, name + ' syntax')} is not allowed")
        visitor(node)

    def _check_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.check(value)

    def _check_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in _BINARY_OPERATORS:
            refuse(f"operator {_REFUSED_OPERATORS.get(type(node.op), '?')} is not allowed")
        self.check(node.left)
        self.check(node.right)

    def _check_UnaryOp(self, node: ast.UnaryOp) -> None:
        if type(node.op) not in _UNARY_OPERATORS:
            refuse(f"operator {_REFUSED_OPERATORS.get(type(node.op), '?')} is not allowed")
        self.check(node.operand)

    def _check_Compare(self, node: ast.Compare) -> None:
        self.check(node.left)
        for comparator in node.comparators:
            self.check(comparator)

    def _check_IfExp(self, node: ast.IfExp) -> None:
        self.check(node.test)
        self.check(node.body)
        self.check(node.orelse)

    def _check_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if value is None or isinstance(value, (bool, str, float)):
            return
        if isinstance(value, int):
            if value.bit_length() > limits.MAX_INT_BITS:
                refuse(f"number too large (over {limits.MAX_INT_BITS:,} bits)")
            return
        kind = "..." if value is Ellipsis else type(value).__name__
        refuse(f"{kind} literals are not allowed")

    def _check_Name(self, node: ast.Name) -> None:
        name = node.id
        _refuse_private("name", name)
        if any(name in scope for scope in self.scopes):
            return
        if name in self.allowed_names:
            self.used.add(name)
            return
        if name in ALLOWED_FUNCTIONS:
            refuse(f"function {name!r} can only be called, as in {name}(...)")
        known = ", ".join(sorted(self.allowed_names))
        refuse(f"unknown name {name!r} (known names: {known})")

    def _check_Attribute(self, node: ast.Attribute) -> None:
        _refuse_private("attribute", node.attr)
        if node.attr in FORMAT_METHODS:
            refuse(f"method {node.attr!r} is not allowed")
        self.check(node.value)

    def _check_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            _refuse_private("function", func.id)
            if func.id not in ALLOWED_FUNCTIONS:
                allowed = ", ".join(sorted(ALLOWED_FUNCTIONS))
                refuse(f"function {func.id!r} is not allowed (allowed: {allowed})")
        elif isinstance(func, ast.Attribute):
            _refuse_private("method", func.attr)
            if func.attr not in METHOD_NAMES:
                refuse(f"method {func.attr!r} is not allowed")
            self.check(func.value)
        else:
            refuse("only the allowed functions and methods can be called")
        if node.keywords:
            refuse("keyword arguments are not allowed")
        for arg in node.args:
            self.check(arg)

    def _check_Subscript(self, node: ast.Subscript) -> None:
        self.check(node.value)
        self.check(node.slice)

    def _check_Slice(self, node: ast.Slice) -> None:
        for part in (node.lower, node.upper, node.step):
            if part is not None:
                self.check(part)

    def _check_List(self, node: ast.List) -> None:
        for element in node.elts:
            self.check(element)

    def _check_Tuple(self, node: ast.Tuple) -> None:
        for element in node.elts:
            self.check(element)

    def _check_JoinedStr(self, node: ast.JoinedStr) -> None:
        for value in node.values:
            self.check(value)

    def _check_FormattedValue(self, node: ast.FormattedValue) -> None:
        if node.format_spec is not None:
            refuse("format specs in f-strings (like {x:>10}) are not allowed")
        self.check(node.value)

    def _check_ListComp(self, node: ast.ListComp) -> None:
        self._check_comprehension(node)

    def _check_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._check_comprehension(node)

    def _check_comprehension(self, node: ast.ListComp | ast.GeneratorExp) -> None:
        if len(node.generators) > limits.MAX_FOR_CLAUSES:
            refuse(f"a comprehension may have at most {limits.MAX_FOR_CLAUSES} 'for' clauses")
        # A comprehension over a comprehension multiplies what each builds, and items that
        # repeat their loop variable ((t, t)) share it: n levels can build 2**n leaves
        # from a few hundred characters. Two levels cover real conditions.
        self.comprehension_depth += 1
        if self.comprehension_depth > limits.MAX_COMPREHENSION_NESTING:
            refuse(
                f"comprehensions may nest at most {limits.MAX_COMPREHENSION_NESTING} deep (deeper "
                "nesting can build values of exponential size)"
            )
        bound: set[str] = set()
        self.check(node.generators[0].iter)  # evaluated in the enclosing scope, as in Python
        self.scopes.append(bound)
        try:
            for index, generator in enumerate(node.generators):
                if generator.is_async:
                    refuse("async comprehensions are not allowed")
                if index:
                    self.check(generator.iter)
                self._bind(generator.target, bound)
                for condition in generator.ifs:
                    self.check(condition)
            self.check(node.elt)
        finally:
            self.scopes.pop()
            self.comprehension_depth -= 1

    def _bind(self, target: ast.AST, bound: set[str]) -> None:
        if isinstance(target, ast.Name):
            _refuse_private("loop variable", target.id)
            if target.id in self.allowed_names or target.id in ALLOWED_FUNCTIONS:
                refuse(f"loop variable {target.id!r} would hide the name {target.id!r}")
            bound.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind(element, bound)
        else:
            refuse("only names can be loop variables")


def _check_depth(tree: ast.Expression) -> None:
    # Iterative so that the depth check itself cannot overflow the stack.
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.MAX_DEPTH:
            refuse(f"expression is nested too deeply (more than {limits.MAX_DEPTH} levels)")
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + 1 if isinstance(child, ast.expr) else depth))


def _parse_expression(
    source: str, allowed_names: frozenset[str]
) -> tuple[ast.Expression, frozenset[str]]:
    text = source.strip()
    if not text:
        refuse("expression is empty")
    if len(text) > limits.MAX_EXPRESSION_LENGTH:
        refuse(
            f"expression is too long ({len(text):,} characters, "
            f"limit {limits.MAX_EXPRESSION_LENGTH:,})"
        )
    try:
        # ast.parse only builds a tree (nothing runs); silence its warnings about odd escapes
        # so the CLI does not print them, the cache makes this once per distinct source.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        refuse(_syntax_message(exc))
    except (RecursionError, MemoryError):
        refuse(f"expression is nested too deeply (more than {limits.MAX_DEPTH} levels)")
    except ValueError as exc:  # e.g. NUL characters
        refuse(f"invalid syntax ({exc})")
    _check_depth(tree)
    checker = _ExpressionChecker(allowed_names)
    checker.check(tree.body)
    return tree, frozenset(checker.used)


# --------------------------------------------------------------------------- evaluation
def _operators() -> dict[type[ast.AST], Callable[..., Any]]:
    table: dict[type[ast.AST], Callable[..., Any]] = dict(_UNARY_OPERATORS)
    for node_type, symbol in _BINARY_OPERATORS.items():
        table[node_type] = functools.partial(binop, symbol)
    for node_type, symbol in _COMPARE_OPERATORS.items():
        table[node_type] = functools.partial(compare, symbol)
    table[ast.Is] = op.is_
    table[ast.IsNot] = op.is_not
    return table


_EXPRESSION_OPERATORS = _operators()


def _get_field(value: Any, name: str) -> Any:
    """``value.name`` in an expression: a message field or a dict key, nothing else."""
    _refuse_private("attribute", name)
    if isinstance(value, MessageView):
        if name in MESSAGE_FIELDS:
            return getattr(value, name)
        refuse(f"a message has no field {name!r} (fields: {', '.join(sorted(MESSAGE_FIELDS))})")
    if isinstance(value, Mapping):
        if name in value:
            return value[name]
        refuse(f"no key {name!r} (use .get({name!r}) when it may be missing)")
    if value is None:
        refuse(f"cannot read {name!r} of None")
    refuse(f"cannot read attribute {name!r} of a {type_name(value)} value")


class _Evaluator:
    """Walks one validated expression tree; one instance per evaluation.

    flowcli owns this evaluator outright: every node type it handles is one that
    _ExpressionChecker admits, and every operation goes through the guards above.
    """

    __slots__ = ("_values", "_scopes", "_budget")

    def __init__(self, names: Mapping[str, Any], budget: Budget) -> None:
        self._values = names
        self._scopes: list[dict[str, Any]] = []
        self._budget = budget

    def eval(self, node: ast.AST) -> Any:
        spend(self._budget, 1)
        handler = _NODE_HANDLERS.get(type(node))
        if handler is None:
            refuse(f"{type(node).__name__} syntax is not allowed")
        return handler(self, node)

    def _eval_boolop(self, node: ast.BoolOp) -> Any:
        # `and` stops at the first false operand, `or` at the first true one; the value
        # is that operand, as in Python
        stop_when = not isinstance(node.op, ast.And)
        value: Any = None
        for operand in node.values:
            value = self.eval(operand)
            if bool(value) is stop_when:
                return value
        return value

    def _eval_binop(self, node: ast.BinOp) -> Any:
        operator = _EXPRESSION_OPERATORS[type(node.op)]
        return operator(self.eval(node.left), self.eval(node.right))

    def _eval_unaryop(self, node: ast.UnaryOp) -> Any:
        return _UNARY_OPERATORS[type(node.op)](self.eval(node.operand))

    def _eval_compare(self, node: ast.Compare) -> Any:
        left = self.eval(node.left)
        for operator, operand in zip(node.ops, node.comparators, strict=True):
            right = self.eval(operand)
            if not _EXPRESSION_OPERATORS[type(operator)](left, right):
                return False
            left = right
        return True

    def _eval_ifexp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def _eval_constant(self, node: ast.Constant) -> Any:
        return node.value

    def _eval_slice(self, node: ast.Slice) -> slice:
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else self.eval(part) for part in parts))

    def _eval_name(self, node: ast.Name) -> Any:
        for scope in reversed(self._scopes):
            if node.id in scope:
                return scope[node.id]
        try:
            value = self._values[node.id]
        except KeyError:
            refuse(f"name {node.id!r} has no value here")
        if callable(value):
            refuse(f"name {node.id!r} holds a function, which expressions cannot use")
        return value

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        return _get_field(self.eval(node.value), node.attr)

    def _eval_call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = self.eval(func.value)
            return call_method(owner, func.attr, [self.eval(arg) for arg in node.args])
        assert isinstance(func, ast.Name)  # guaranteed by _ExpressionChecker._check_Call
        function = ALLOWED_FUNCTIONS[func.id]
        return function(*[self.eval(arg) for arg in node.args])

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self.eval(node.value)
        key = self.eval(node.slice)
        if isinstance(container, Mapping):
            charge_hash(key)
        elif not isinstance(container, SEQUENCES):
            refuse(f"cannot index a {type_name(container)} value")
        result = container[key]
        if isinstance(key, slice) and isinstance(result, SEQUENCES):
            charge(len(result))
        return result

    def _eval_sequence(self, node: ast.List | ast.Tuple) -> Any:
        items = [self.eval(element) for element in node.elts]
        charge(len(items))
        return items if isinstance(node, ast.List) else tuple(items)

    def _eval_joinedstr(self, node: ast.JoinedStr) -> str:
        parts: list[str] = []
        total = 0
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                text = self._eval_formattedvalue(value)
            else:
                assert isinstance(value, ast.Constant)  # the literal parts of an f-string
                text = str(value.value)
            total += len(text)
            check_length(total)
            parts.append(text)
        result = "".join(parts)
        charge(len(result))
        return result

    def _eval_formattedvalue(self, node: ast.FormattedValue) -> str:
        value = self.eval(node.value)
        convert: Callable[[Any], str] = {ord("r"): repr, ord("a"): ascii}.get(node.conversion, str)
        return to_text(value, convert)

    def _eval_comprehension(self, node: ast.ListComp | ast.GeneratorExp) -> list[Any]:
        # Generator expressions are evaluated eagerly: results are bounded anyway, and any()
        # or all() over a list behaves the same. Each item costs the size of the loop body.
        cost = sum(1 for _ in ast.walk(node))
        result: list[Any] = []
        first = self.eval(node.generators[0].iter)
        self._scopes.append({})
        try:
            self._run_generator(node, 0, first, result, cost)
        finally:
            self._scopes.pop()
        return result

    def _run_generator(
        self,
        node: ast.ListComp | ast.GeneratorExp,
        index: int,
        iterable: Any,
        result: list[Any],
        cost: int,
    ) -> None:
        if not isinstance(iterable, (*SEQUENCES, Mapping)):
            refuse(f"cannot loop over a {type_name(iterable)} value")
        generator = node.generators[index]
        scope = self._scopes[-1]
        for item in iterable:
            iterate(cost)
            _bind(generator.target, item, scope)
            if all(self.eval(condition) for condition in generator.ifs):
                if index + 1 < len(node.generators):
                    inner = self.eval(node.generators[index + 1].iter)
                    self._run_generator(node, index + 1, inner, result, cost)
                else:
                    result.append(self.eval(node.elt))
                    charge(1)


# Exactly the node types _ExpressionChecker admits; anything else is refused by eval().
_NODE_HANDLERS: dict[type[ast.AST], Callable[[_Evaluator, Any], Any]] = {
    ast.BoolOp: _Evaluator._eval_boolop,
    ast.BinOp: _Evaluator._eval_binop,
    ast.UnaryOp: _Evaluator._eval_unaryop,
    ast.Compare: _Evaluator._eval_compare,
    ast.IfExp: _Evaluator._eval_ifexp,
    ast.Constant: _Evaluator._eval_constant,
    ast.Name: _Evaluator._eval_name,
    ast.Attribute: _Evaluator._eval_attribute,
    ast.Call: _Evaluator._eval_call,
    ast.Subscript: _Evaluator._eval_subscript,
    ast.Slice: _Evaluator._eval_slice,
    ast.List: _Evaluator._eval_sequence,
    ast.Tuple: _Evaluator._eval_sequence,
    ast.JoinedStr: _Evaluator._eval_joinedstr,
    ast.FormattedValue: _Evaluator._eval_formattedvalue,
    ast.ListComp: _Evaluator._eval_comprehension,
    ast.GeneratorExp: _Evaluator._eval_comprehension,
}


def _bind(target: ast.AST, value: Any, scope: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        scope[target.id] = value
        return
    assert isinstance(target, (ast.Tuple, ast.List))  # guaranteed by _ExpressionChecker._bind
    if not isinstance(value, (list, tuple)):
        refuse(f"cannot unpack a {type_name(value)} value into {len(target.elts)} names")
    if len(value) != len(target.elts):
        refuse(f"cannot unpack {len(value)} values into {len(target.elts)} names")
    for element, item in zip(target.elts, value, strict=True):
        _bind(element, item, scope)


class Expression:
    """A validated expression; immutable and safe to share. Build with compile_expression."""

    __slots__ = ("source", "names_used", "_tree")

    def __init__(self, source: str, names_used: frozenset[str], tree: ast.Expression) -> None:
        self.source = source
        self.names_used = names_used
        self._tree = tree

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """The expression's value; every failure is an ExpressionError."""
        budget = Budget()
        token = CURRENT_BUDGET.set(budget)
        try:
            return _Evaluator(names, budget).eval(self._tree.body)
        except Exception as exc:
            reraise_foreign(exc)
            raise ExpressionError(f"{label('expression', self.source)}: {describe(exc)}") from exc
        finally:
            CURRENT_BUDGET.reset(token)

    def evaluate_bool(self, names: Mapping[str, Any]) -> bool:
        """Truthiness of evaluate(names)."""
        value = self.evaluate(names)
        try:
            return bool(value)
        except Exception as exc:
            raise ExpressionError(f"{label('expression', self.source)}: {describe(exc)}") from exc


def compile_expression(
    source: str, *, allowed_names: frozenset[str] = EXPRESSION_NAMES
) -> Expression:
    """Validate ``source`` once (cached) and return an Expression; raises ExpressionError."""
    return _compile_expression(source, checked_source("expression", source, allowed_names))


@functools.lru_cache(maxsize=1024)
def _compile_expression(source: str, allowed_names: frozenset[str]) -> Expression:
    try:
        tree, used = _parse_expression(source, allowed_names)
    except Exception as exc:
        raise ExpressionError(f"{label('expression', source)}: {describe(exc)}") from None
    return Expression(source, used, tree)


def validate_expression(source: str) -> str | None:
    """None when ``source`` is a valid expression, else the error message."""
    try:
        compile_expression(source)
    except ExpressionError as exc:
        return exc.message
    return None
