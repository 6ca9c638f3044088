"""Sandboxed flow expressions (an evaluator of our own over Python's ast) and templates (Jinja2).

Owns everything users may write inside a flow's conditions and templates: which names,
functions, methods and operators exist, and the limits that keep every evaluation cheap.
Two kinds of limit: an allocation budget (what gets built) and a work budget (what gets
walked: loop iterations, and the items that hashing, comparing, sorting and printing visit,
shared references counted each time they occur), plus a CPU-time deadline checked while an
evaluation runs. Shapes that could build exponentially large values are refused up front.

Expressions: the names in EXPRESSION_NAMES; str/int/float/True/False/None, list and tuple
literals; ``+ - * / // % **``, ``and or not``, ``== != < <= > >= in not in is is not``,
``a if c else b``, subscripts and slices, f-strings without format specs, list comprehensions
and generator expressions (at most 3 ``for``). Functions (ALLOWED_FUNCTIONS, positional
arguments only): abs all any bool float int len max min sorted str sum. Methods: str: lower
upper title capitalize strip lstrip rstrip startswith endswith count find split replace join
removeprefix removesuffix isdigit isalpha; dict: get keys values items; list/tuple: count
index. ``last.content`` reads a MessageView field, ``vars.mood`` a dict key (``vars['mood']``
and ``vars.get('mood')`` work too). Nothing starting with ``_`` and no ``format`` ever.

Templates: Jinja2 with the same names (TEMPLATE_NAMES), the same methods, ``range`` as the
only global, an allowlist of filters and tests, StrictUndefined, and no macros, imports,
includes, blocks or recursive loops. Limits (per evaluation or render) are the MAX_* values.
Only Jinja's public API builds templates (parse, a tree rewrite of our own, compile); the
sandbox hooks rely on Jinja 3.1's behaviour, so pyproject.toml pins Jinja2 to 3.1.x.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import operator as op
import time
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any, NoReturn

from jinja2 import Undefined, meta, nodes, pass_environment
from jinja2 import filters as jinja_filters
from jinja2 import tests as jinja_tests
from jinja2.environment import Environment
from jinja2.environment import Template as JinjaTemplate
from jinja2.exceptions import TemplateSyntaxError
from jinja2.runtime import Context, LoopContext, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowcli.engine.message_view import MessageView
from flowcli.errors import ExpressionError, FlowcliError

__all__ = [
    "ALLOWED_FUNCTIONS",
    "EXPRESSION_NAMES",
    "TEMPLATE_NAMES",
    "Expression",
    "MessageView",
    "Template",
    "compile_expression",
    "compile_template",
    "validate_expression",
    "validate_template",
]

# --------------------------------------------------------------------------- limits
# Conservative on purpose: conditions and responder templates are small, and every limit is
# checked *before* the work is done, so a hostile flow fails in milliseconds, not on OOM.
MAX_EXPRESSION_LENGTH = 10_000  # characters of expression source
MAX_TEMPLATE_LENGTH = 100_000  # characters of template source
MAX_DEPTH = 50  # nesting of expression syntax (parentheses, operators, calls ...)
MAX_FOR_CLAUSES = 3  # `for` clauses in one comprehension
MAX_COMPREHENSION_NESTING = 2  # a comprehension inside another's iterable, item or condition
MAX_STRING_LENGTH = 100_000  # characters/items of any str, list or tuple an operation builds
MAX_INT_BITS = 4_096  # integers from * and ** (about 1,233 decimal digits)
MAX_NUMBER_TEXT = 100  # characters int() will parse
MAX_ITERATIONS = 10_000  # loop/comprehension items and range() length, per evaluation
MAX_WORK = 2_000_000  # sum over loop iterations of the loop body's size, per evaluation
MAX_ALLOCATION = 10_000_000  # characters/items created in total, per evaluation
MAX_COMPARE_WORK = 200_000  # expanded size of one value compared, sorted or hashed
MAX_WALK = 20_000_000  # expanded items hashed, compared, sorted or printed, per evaluation
MAX_TEMPLATE_VALUE_SIZE = 100_000  # a template's statically estimated value size ({% set %})
MAX_CPU_SECONDS = 1.0  # CPU time of one evaluation or render, checked while it runs
MAX_OUTPUT_LENGTH = 1_000_000  # characters of rendered template output

# --------------------------------------------------------------------------- names
EXPRESSION_NAMES: frozenset[str] = frozenset(
    {"round", "step", "loop_iteration", "executed_steps", "topic", "vars", "last", "messages"}
)
TEMPLATE_NAMES: frozenset[str] = EXPRESSION_NAMES | {"speaker", "target", "task_type"}


_MESSAGE_FIELDS = frozenset(field.name for field in fields(MessageView))
_LOOP_ATTRIBUTES = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0"}
    | {"previtem", "nextitem", "cycle", "changed"}
)
_PRIVATE_HINT = "names starting with '_' are private"
_FORMAT_METHODS = frozenset({"format", "format_map"})


class _Refused(Exception):
    """Internal: the sandbox refused something; turned into ExpressionError at the boundary."""


def _refuse(message: str) -> NoReturn:
    raise _Refused(message)


# --------------------------------------------------------------------------- budget
_CLOCK_INTERVAL = 64


@dataclass(slots=True)
class _Budget:
    """What one evaluation or render has spent so far; every guard charges it."""

    allocated: int = 0
    iterations: int = 0
    work: int = 0
    walked: int = 0
    # Ticks approximate elapsed work (about a microsecond each); the clock is read every
    # _CLOCK_INTERVAL of them, since reading a thread's CPU time is a system call.
    ticks: int = 0
    next_look: int = _CLOCK_INTERVAL
    # CPU time of this thread, so a busy machine does not fail a cheap evaluation. Set at
    # the first look at the clock: a cheap evaluation never pays for reading it.
    deadline: float | None = None
    # id -> (value, expanded size, expanded text length). The value is kept so that its
    # id cannot be reused by a new object while this evaluation runs.
    measured: dict[int, tuple[Any, int, int]] = field(default_factory=dict)


# A context variable rather than evaluator state so that the module-level guards (operators,
# functions, methods, Jinja filters) can charge the evaluation that is running right now.
_BUDGET: ContextVar[_Budget | None] = ContextVar("flowcli_expression_budget", default=None)


def _spend(budget: _Budget, ticks: int) -> None:
    """Count work done; every _CLOCK_INTERVAL ticks, check the CPU deadline."""
    budget.ticks += ticks
    if budget.ticks >= budget.next_look:
        budget.next_look = budget.ticks + _CLOCK_INTERVAL
        now = time.thread_time()
        if budget.deadline is None:
            budget.deadline = now + MAX_CPU_SECONDS
        elif now > budget.deadline:
            _refuse(f"takes too long (more than {MAX_CPU_SECONDS:g} s of CPU time)")


def _tick() -> None:
    """A guard ran (guards are where long work can happen)."""
    budget = _BUDGET.get()
    if budget is not None:
        _spend(budget, 1)


def _charge(size: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.allocated += size
        if budget.allocated > MAX_ALLOCATION:
            _refuse(f"creates too much data (more than {MAX_ALLOCATION:,} characters or items)")
        _spend(budget, 1 + size // 1024)


def _iterate(cost: int) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.iterations += 1
    budget.work += cost
    if budget.iterations > MAX_ITERATIONS:
        _refuse(f"loops run more than {MAX_ITERATIONS:,} times")
    if budget.work > MAX_WORK:
        _refuse(f"loops do too much work (more than {MAX_WORK:,} steps)")
    _spend(budget, 1 + cost // 16)


def _walk(cost: int) -> None:
    """Charge work that walks values (hashing, comparing, sorting, printing) *before* it runs."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.walked += cost
    if budget.walked > MAX_WALK:
        _refuse(
            f"walks too much data (more than {MAX_WALK:,} items hashed, compared, sorted "
            "or printed)"
        )
    _spend(budget, 1 + cost // 256)


# --------------------------------------------------------------------------- shared guards
_SEQUENCES = (str, list, tuple)
_CONTAINERS = (list, tuple, dict)
_WALKED = (str, list, tuple, dict)  # values whose comparison walks their contents


def _type_name(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, MessageView):
        return "message"
    return type(value).__name__


def _check_length(size: int) -> None:
    if size > MAX_STRING_LENGTH:
        _refuse(f"result would be longer than {MAX_STRING_LENGTH:,} characters or items")


def _measure_atom(value: Any) -> tuple[int, int] | None:
    """(size, text length) of a value that holds no other values; None for containers."""
    if isinstance(value, str):
        # comparing or hashing text runs at memory speed: one unit per 64 characters
        return 1 + len(value) // 64, len(value) + 2
    if isinstance(value, (list, tuple, dict, MessageView)):
        return None
    if isinstance(value, bool) or value is None:
        return 1, 5
    if isinstance(value, int):
        return 1, value.bit_length() // 3 + 2
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises, instead of printing as "Undefined" in a list
    return 1, 24


def _children(value: Any) -> tuple[Any, ...] | list[Any]:
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    assert isinstance(value, MessageView)
    return (value.id, value.speaker, value.target, value.content, value.section, value.round)


def _text_overhead(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return 2 + 2 * len(value)  # brackets and ", "
    if isinstance(value, dict):
        return 2 + 4 * len(value)  # braces, ": " and ", "
    return 80  # MessageView(id=..., speaker=..., ...)


def _measure(value: Any) -> tuple[int, int]:
    """(size, text length) of ``value`` as hashing, comparing or ``str()`` would walk it.

    Shared references count again each time they occur (``(t, t)`` costs twice ``t``), as
    they do for the work those operations do, so a small object graph can have an enormous
    size. Each object is measured once per evaluation (memoised by id), so the measuring
    itself costs only the number of distinct objects. Iterative: deep nesting is fine.
    """
    atom = _measure_atom(value)
    if atom is not None:
        return atom
    budget = _BUDGET.get()
    memo = budget.measured if budget is not None else {}
    known = memo.get(id(value))
    if known is not None:
        return known[1], known[2]
    in_progress: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, children_done = stack.pop()
        key = id(item)
        if children_done:
            size, text = 1, _text_overhead(item)
            for child in _children(item):
                found = _measure_atom(child)
                if found is None:
                    found = memo[id(child)][1:]
                size += found[0]
                text += found[1]
            memo[key] = (item, size, text)
            in_progress.discard(key)
            continue
        if key in memo:
            continue
        if key in in_progress:
            _refuse("a value contains itself")
        in_progress.add(key)
        stack.append((item, True))
        for child in _children(item):
            if _measure_atom(child) is None and id(child) not in memo:
                stack.append((child, False))
    found_size, found_text = memo[id(value)][1:]
    return found_size, found_text


def _to_text(value: Any, convert: Callable[[Any], str] = str) -> str:
    """``str(value)`` (or repr/ascii) without building a gigantic string first."""
    if isinstance(value, Undefined):
        return str(value)  # StrictUndefined raises its own precise error here
    if convert is str and isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return convert(value)
    if callable(value):
        _refuse("a function cannot be turned into text")
    size, text = _measure(value)
    if text > MAX_STRING_LENGTH:
        _refuse(f"value is too large to turn into text (over {MAX_STRING_LENGTH:,} characters)")
    _walk(size)
    result = convert(value)
    _check_length(len(result))  # repr/ascii escapes can still grow a string a few times
    _charge(len(result))
    return result


def _charge_comparison(left: Any, right: Any) -> None:
    """Charge ``left == right`` (or ``<`` ...) before it runs.

    Equality and ordering stop at the first difference and never descend further than
    the smaller operand, so the smaller expanded size bounds their work.
    """
    if not isinstance(left, _WALKED) or type(left) is not type(right):
        # numbers, None, messages, or two different types: decided without walking
        _tick()
        return
    cost = min(_measure(left)[0], _measure(right)[0])
    if cost > MAX_COMPARE_WORK and isinstance(left, _CONTAINERS):
        _refuse("values are too large to compare")
    _walk(cost)


def _charge_hash(key: Any) -> None:
    """Charge hashing ``key`` (a dict lookup): a tuple's hash walks all of it."""
    size = _measure(key)[0]
    if size > MAX_COMPARE_WORK:
        _refuse("value is too large to look up")
    _walk(size)


def _charge_membership(needle: Any, haystack: Any) -> None:
    """Charge ``needle in haystack`` before it runs."""
    if isinstance(haystack, Mapping):
        _charge_hash(needle)
    elif isinstance(haystack, (list, tuple)):
        # each item is compared with the needle, at most the smaller of the two
        cost = min(_measure(haystack)[0], len(haystack) * _measure(needle)[0])
        if cost > MAX_COMPARE_WORK and isinstance(needle, _CONTAINERS):
            _refuse("values are too large to compare")
        _walk(cost + 1)
    elif isinstance(haystack, str):
        _walk(1 + len(haystack) // 64)
    elif isinstance(haystack, range):
        _walk(1 if isinstance(needle, int) else len(haystack))
    else:
        _tick()


def _charge_sort(items: list[Any]) -> None:
    """Charge sorting ``items`` (or min/max/unique): about n log n comparisons."""
    size = _measure(items)[0]
    if size > MAX_COMPARE_WORK and any(isinstance(item, _CONTAINERS) for item in items):
        _refuse("values are too large to compare")
    _walk(size * max(1, len(items).bit_length()))


def _repeat(sequence: Any, count: int) -> Any:
    count = max(count, 0)
    _check_length(len(sequence) * count)
    if (
        count > 1
        and not isinstance(sequence, str)
        and any(isinstance(item, _CONTAINERS) for item in sequence)
    ):
        # every copy would share the same inner objects: tiny to build, enormous to print
        _refuse("repeating a list that contains lists or dicts is not allowed")
    result = sequence * count
    _charge(len(result))
    return result


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


_PLAIN_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "-": op.sub,
    "/": op.truediv,
    "//": op.floordiv,
}


def _binop(operator: str, left: Any, right: Any) -> Any:
    """The arithmetic operators of both languages, bounded before they run."""
    if operator == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _check_length(len(left) + len(right))
            result = op.add(left, right)
            _charge(len(result))
            return result
        return left + right
    if operator == "*":
        if isinstance(left, _SEQUENCES) and isinstance(right, int):
            return _repeat(left, right)
        if isinstance(right, _SEQUENCES) and isinstance(left, int):
            return _repeat(right, left)
        if _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
            _refuse(f"number too large (over {MAX_INT_BITS:,} bits)")
        return left * right
    if operator == "**":
        # bit_length(a) * b bounds the size of a ** b; 1, 0, -1 and negative b stay small
        bits = _int_bits(left)
        if isinstance(right, int) and right > 0 and bits > 1 and bits * right > MAX_INT_BITS:
            _refuse(f"number too large (over {MAX_INT_BITS:,} bits)")
        return left**right
    if operator == "%":
        if isinstance(left, (str, bytes)):
            _refuse("string formatting with % is not allowed")
        return left % right
    plain = _PLAIN_BINOPS.get(operator)
    if plain is None:
        _refuse(f"operator {operator} is not allowed")
    return plain(left, right)


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": op.eq,
    "!=": op.ne,
    "<": op.lt,
    "<=": op.le,
    ">": op.gt,
    ">=": op.ge,
}


def _compare(operator: str, left: Any, right: Any) -> Any:
    """The comparisons of both languages, refusing ones that would walk enormous values."""
    if operator in ("in", "not in"):
        _charge_membership(left, right)
        found = left in right
        return found if operator == "in" else not found
    _charge_comparison(left, right)
    return _COMPARISONS[operator](left, right)


# --------------------------------------------------------------------------- methods
def _named(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a wrapper the public name users know, so TypeError messages read naturally."""

    def rename(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__name__ = name
        function.__qualname__ = name
        return function

    return rename


@_named("replace")
def _str_replace(text: str, old: str, new: str, count: int = -1) -> str:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        raise TypeError("replace() arguments must be strings")
    if not isinstance(count, int):
        raise TypeError("replace() count must be an integer")
    occurrences = text.count(old) if old else len(text) + 1
    if count >= 0:
        occurrences = min(occurrences, count)
    _check_length(len(text) + occurrences * (len(new) - len(old)))
    return text.replace(old, new, count)


@_named("join")
def _str_join(separator: str, items: Any) -> str:
    parts: list[str] = []
    total = 0
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"join() expects strings, found a {_type_name(item)}")
        total += len(item) + (len(separator) if parts else 0)
        _check_length(total)
        parts.append(item)
    return separator.join(parts)


@_named("get")
def _mapping_get(mapping: Mapping[Any, Any], key: Any, default: Any = None) -> Any:
    _charge_hash(key)
    return mapping.get(key, default)


@_named("keys")
def _mapping_keys(mapping: Mapping[Any, Any]) -> list[Any]:
    return list(mapping.keys())


@_named("values")
def _mapping_values(mapping: Mapping[Any, Any]) -> list[Any]:
    return list(mapping.values())


@_named("items")
def _mapping_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    return list(mapping.items())


@_named("count")
def _sequence_count(sequence: Any, value: Any) -> int:
    _charge_membership(value, sequence)
    return int(sequence.count(value))


@_named("index")
def _sequence_index(sequence: Any, value: Any, *bounds: int) -> int:
    _charge_membership(value, sequence)
    return int(sequence.index(value, *bounds))


_STR_METHODS: dict[str, Callable[..., Any]] = {
    "lower": str.lower,
    "upper": str.upper,
    "title": str.title,
    "capitalize": str.capitalize,
    "strip": str.strip,
    "lstrip": str.lstrip,
    "rstrip": str.rstrip,
    "startswith": str.startswith,
    "endswith": str.endswith,
    "count": str.count,
    "find": str.find,
    "split": str.split,
    "replace": _str_replace,
    "join": _str_join,
    "removeprefix": str.removeprefix,
    "removesuffix": str.removesuffix,
    "isdigit": str.isdigit,
    "isalpha": str.isalpha,
}
_MAPPING_METHODS: dict[str, Callable[..., Any]] = {
    "get": _mapping_get,
    "keys": _mapping_keys,
    "values": _mapping_values,
    "items": _mapping_items,
}
_SEQUENCE_METHODS: dict[str, Callable[..., Any]] = {
    "count": _sequence_count,
    "index": _sequence_index,
}
_METHOD_NAMES = frozenset(_STR_METHODS) | frozenset(_MAPPING_METHODS) | frozenset(_SEQUENCE_METHODS)


def _method_table(value: Any) -> dict[str, Callable[..., Any]] | None:
    if isinstance(value, str):
        return _STR_METHODS
    if isinstance(value, Mapping):
        return _MAPPING_METHODS
    if isinstance(value, (list, tuple)):
        return _SEQUENCE_METHODS
    return None


def _call_method(value: Any, name: str, args: list[Any]) -> Any:
    table = _method_table(value)
    method = table.get(name) if table is not None else None
    if method is None:
        _refuse(f"method {name!r} is not allowed on {_type_name(value)} values")
    result = method(value, *args)
    if isinstance(result, _SEQUENCES):
        _charge(len(result))
    return result


# --------------------------------------------------------------------------- functions
@_named("int")
def _safe_int(value: Any = 0, *base: int) -> int:
    if isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
        _refuse(f"int() of text longer than {MAX_NUMBER_TEXT} characters is not allowed")
    return int(value, *base)


@_named("str")
def _safe_str(value: Any = "") -> str:
    return _to_text(value)


def _items_of(name: str, args: tuple[Any, ...]) -> list[Any]:
    if not args:
        raise TypeError(f"{name}() expected at least 1 argument")
    return list(args[0]) if len(args) == 1 else list(args)


@_named("min")
def _safe_min(*args: Any) -> Any:
    items = _items_of("min", args)
    _charge_sort(items)
    return min(items)


@_named("max")
def _safe_max(*args: Any) -> Any:
    items = _items_of("max", args)
    _charge_sort(items)
    return max(items)


def _add_numbers(items: list[Any], start: Any) -> Any:
    # only numbers: sum() over lists or strings is quadratic and can build huge values
    for item in (start, *items):
        if not isinstance(item, (int, float)):
            raise TypeError(f"sum() only adds numbers, found a {_type_name(item)}")
    return sum(items, start)


@_named("sum")
def _safe_sum(items: Any, start: Any = 0) -> Any:
    return _add_numbers(list(items), start)


@_named("sorted")
def _safe_sorted(items: Any) -> list[Any]:
    values = list(items)
    _charge_sort(values)
    _charge(len(values))
    return sorted(values)


#: The functions expressions may call. ``round`` is deliberately absent: it is a flow name
#: (the round number), and rounding is not needed in conditions.
ALLOWED_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "float": float,
    "int": _safe_int,
    "len": len,
    "max": _safe_max,
    "min": _safe_min,
    "sorted": _safe_sorted,
    "str": _safe_str,
    "sum": _safe_sum,
}


# --------------------------------------------------------------------------- messages
def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(kind: str, source: Any) -> str:
    text = source if isinstance(source, str) else repr(source)
    return f'{kind} "{_one_line(text, 60)}"'


def _describe(exc: BaseException) -> str:
    """One short line saying what went wrong, never a traceback."""
    if isinstance(exc, _Refused):
        message = str(exc)
    elif isinstance(exc, FlowcliError):
        message = exc.message
    elif isinstance(exc, RecursionError):
        message = "nested too deeply"
    elif isinstance(exc, MemoryError):
        message = "ran out of memory"
    elif isinstance(exc, ZeroDivisionError):
        message = "division by zero"
    elif isinstance(exc, OverflowError):
        message = "number too large"
    elif isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else None
        message = f"key {_one_line(repr(key), 60)} not found"
    elif isinstance(exc, IndexError):
        message = "index out of range"
    elif isinstance(exc, TemplateSyntaxError):
        message = f"syntax error at line {exc.lineno}: {exc.message or 'invalid syntax'}"
    else:
        message = str(exc) or type(exc).__name__
    return _one_line(message, 200)


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
        _refuse(f"{kind} {name!r} is not allowed ({_PRIVATE_HINT})")


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
            _refuse(f"{_NODE_NAMES.get(name, name + ' syntax')} is not allowed")
        visitor(node)

    def _check_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.check(value)

    def _check_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in _BINARY_OPERATORS:
            _refuse(f"operator {_REFUSED_OPERATORS.get(type(node.op), '?')} is not allowed")
        self.check(node.left)
        self.check(node.right)

    def _check_UnaryOp(self, node: ast.UnaryOp) -> None:
        if type(node.op) not in _UNARY_OPERATORS:
            _refuse(f"operator {_REFUSED_OPERATORS.get(type(node.op), '?')} is not allowed")
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
            if value.bit_length() > MAX_INT_BITS:
                _refuse(f"number too large (over {MAX_INT_BITS:,} bits)")
            return
        kind = "..." if value is Ellipsis else type(value).__name__
        _refuse(f"{kind} literals are not allowed")

    def _check_Name(self, node: ast.Name) -> None:
        name = node.id
        _refuse_private("name", name)
        if any(name in scope for scope in self.scopes):
            return
        if name in self.allowed_names:
            self.used.add(name)
            return
        if name in ALLOWED_FUNCTIONS:
            _refuse(f"function {name!r} can only be called, as in {name}(...)")
        known = ", ".join(sorted(self.allowed_names))
        _refuse(f"unknown name {name!r} (known names: {known})")

    def _check_Attribute(self, node: ast.Attribute) -> None:
        _refuse_private("attribute", node.attr)
        if node.attr in _FORMAT_METHODS:
            _refuse(f"method {node.attr!r} is not allowed")
        self.check(node.value)

    def _check_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            _refuse_private("function", func.id)
            if func.id not in ALLOWED_FUNCTIONS:
                allowed = ", ".join(sorted(ALLOWED_FUNCTIONS))
                _refuse(f"function {func.id!r} is not allowed (allowed: {allowed})")
        elif isinstance(func, ast.Attribute):
            _refuse_private("method", func.attr)
            if func.attr not in _METHOD_NAMES:
                _refuse(f"method {func.attr!r} is not allowed")
            self.check(func.value)
        else:
            _refuse("only the allowed functions and methods can be called")
        if node.keywords:
            _refuse("keyword arguments are not allowed")
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
            _refuse("format specs in f-strings (like {x:>10}) are not allowed")
        self.check(node.value)

    def _check_ListComp(self, node: ast.ListComp) -> None:
        self._check_comprehension(node)

    def _check_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._check_comprehension(node)

    def _check_comprehension(self, node: ast.ListComp | ast.GeneratorExp) -> None:
        if len(node.generators) > MAX_FOR_CLAUSES:
            _refuse(f"a comprehension may have at most {MAX_FOR_CLAUSES} 'for' clauses")
        # A comprehension over a comprehension multiplies what each builds, and items that
        # repeat their loop variable ((t, t)) share it: n levels can build 2**n leaves
        # from a few hundred characters. Two levels cover real conditions.
        self.comprehension_depth += 1
        if self.comprehension_depth > MAX_COMPREHENSION_NESTING:
            _refuse(
                f"comprehensions may nest at most {MAX_COMPREHENSION_NESTING} deep (deeper "
                "nesting can build values of exponential size)"
            )
        bound: set[str] = set()
        self.check(node.generators[0].iter)  # evaluated in the enclosing scope, as in Python
        self.scopes.append(bound)
        try:
            for index, generator in enumerate(node.generators):
                if generator.is_async:
                    _refuse("async comprehensions are not allowed")
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
                _refuse(f"loop variable {target.id!r} would hide the name {target.id!r}")
            bound.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind(element, bound)
        else:
            _refuse("only names can be loop variables")


def _check_depth(tree: ast.Expression) -> None:
    # Iterative so that the depth check itself cannot overflow the stack.
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            _refuse(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + 1 if isinstance(child, ast.expr) else depth))


def _parse_expression(
    source: str, allowed_names: frozenset[str]
) -> tuple[ast.Expression, frozenset[str]]:
    text = source.strip()
    if not text:
        _refuse("expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        _refuse(
            f"expression is too long ({len(text):,} characters, limit {MAX_EXPRESSION_LENGTH:,})"
        )
    try:
        # ast.parse only builds a tree (nothing runs); silence its warnings about odd escapes
        # so the CLI does not print them, the cache makes this once per distinct source.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        _refuse(_syntax_message(exc))
    except (RecursionError, MemoryError):
        _refuse(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
    except ValueError as exc:  # e.g. NUL characters
        _refuse(f"invalid syntax ({exc})")
    _check_depth(tree)
    checker = _ExpressionChecker(allowed_names)
    checker.check(tree.body)
    return tree, frozenset(checker.used)


# --------------------------------------------------------------------------- evaluation
def _operators() -> dict[type[ast.AST], Callable[..., Any]]:
    table: dict[type[ast.AST], Callable[..., Any]] = dict(_UNARY_OPERATORS)
    for node_type, symbol in _BINARY_OPERATORS.items():
        table[node_type] = functools.partial(_binop, symbol)
    for node_type, symbol in _COMPARE_OPERATORS.items():
        table[node_type] = functools.partial(_compare, symbol)
    table[ast.Is] = op.is_
    table[ast.IsNot] = op.is_not
    return table


_EXPRESSION_OPERATORS = _operators()


def _get_field(value: Any, name: str) -> Any:
    """``value.name`` in an expression: a message field or a dict key, nothing else."""
    _refuse_private("attribute", name)
    if isinstance(value, MessageView):
        if name in _MESSAGE_FIELDS:
            return getattr(value, name)
        _refuse(f"a message has no field {name!r} (fields: {', '.join(sorted(_MESSAGE_FIELDS))})")
    if isinstance(value, Mapping):
        if name in value:
            return value[name]
        _refuse(f"no key {name!r} (use .get({name!r}) when it may be missing)")
    if value is None:
        _refuse(f"cannot read {name!r} of None")
    _refuse(f"cannot read attribute {name!r} of a {_type_name(value)} value")


class _Evaluator:
    """Walks one validated expression tree; one instance per evaluation.

    flowcli owns this evaluator outright: every node type it handles is one that
    _ExpressionChecker admits, and every operation goes through the guards above.
    """

    __slots__ = ("_values", "_scopes", "_budget")

    def __init__(self, names: Mapping[str, Any], budget: _Budget) -> None:
        self._values = names
        self._scopes: list[dict[str, Any]] = []
        self._budget = budget

    def eval(self, node: ast.AST) -> Any:
        _spend(self._budget, 1)
        handler = _NODE_HANDLERS.get(type(node))
        if handler is None:
            _refuse(f"{type(node).__name__} syntax is not allowed")
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
            _refuse(f"name {node.id!r} has no value here")
        if callable(value):
            _refuse(f"name {node.id!r} holds a function, which expressions cannot use")
        return value

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        return _get_field(self.eval(node.value), node.attr)

    def _eval_call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = self.eval(func.value)
            return _call_method(owner, func.attr, [self.eval(arg) for arg in node.args])
        assert isinstance(func, ast.Name)  # guaranteed by _ExpressionChecker._check_Call
        function = ALLOWED_FUNCTIONS[func.id]
        return function(*[self.eval(arg) for arg in node.args])

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self.eval(node.value)
        key = self.eval(node.slice)
        if isinstance(container, Mapping):
            _charge_hash(key)
        elif not isinstance(container, _SEQUENCES):
            _refuse(f"cannot index a {_type_name(container)} value")
        result = container[key]
        if isinstance(key, slice) and isinstance(result, _SEQUENCES):
            _charge(len(result))
        return result

    def _eval_sequence(self, node: ast.List | ast.Tuple) -> Any:
        items = [self.eval(element) for element in node.elts]
        _charge(len(items))
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
            _check_length(total)
            parts.append(text)
        result = "".join(parts)
        _charge(len(result))
        return result

    def _eval_formattedvalue(self, node: ast.FormattedValue) -> str:
        value = self.eval(node.value)
        convert: Callable[[Any], str] = {ord("r"): repr, ord("a"): ascii}.get(node.conversion, str)
        return _to_text(value, convert)

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
        if not isinstance(iterable, (*_SEQUENCES, Mapping)):
            _refuse(f"cannot loop over a {_type_name(iterable)} value")
        generator = node.generators[index]
        scope = self._scopes[-1]
        for item in iterable:
            _iterate(cost)
            _bind(generator.target, item, scope)
            if all(self.eval(condition) for condition in generator.ifs):
                if index + 1 < len(node.generators):
                    inner = self.eval(node.generators[index + 1].iter)
                    self._run_generator(node, index + 1, inner, result, cost)
                else:
                    result.append(self.eval(node.elt))
                    _charge(1)


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
        _refuse(f"cannot unpack a {_type_name(value)} value into {len(target.elts)} names")
    if len(value) != len(target.elts):
        _refuse(f"cannot unpack {len(value)} values into {len(target.elts)} names")
    for element, item in zip(target.elts, value, strict=True):
        _bind(element, item, scope)


def _reraise_foreign(exc: BaseException) -> None:
    """Errors that are not the expression's fault pass through unchanged.

    A lazily loaded name (``last``, ``messages``) reads the database; a locked or
    damaged database is a database problem, not a failed condition, and must be
    reported as itself.
    """
    from flowcli.errors import FlowcliError

    if isinstance(exc, FlowcliError) and not isinstance(exc, ExpressionError):
        raise exc
    if type(exc).__module__.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg"):
        raise exc


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
        budget = _Budget()
        token = _BUDGET.set(budget)
        try:
            return _Evaluator(names, budget).eval(self._tree.body)
        except Exception as exc:
            _reraise_foreign(exc)
            raise ExpressionError(f"{_label('expression', self.source)}: {_describe(exc)}") from exc
        finally:
            _BUDGET.reset(token)

    def evaluate_bool(self, names: Mapping[str, Any]) -> bool:
        """Truthiness of evaluate(names)."""
        value = self.evaluate(names)
        try:
            return bool(value)
        except Exception as exc:
            raise ExpressionError(f"{_label('expression', self.source)}: {_describe(exc)}") from exc


def compile_expression(
    source: str, *, allowed_names: frozenset[str] = EXPRESSION_NAMES
) -> Expression:
    """Validate ``source`` once (cached) and return an Expression; raises ExpressionError."""
    if not isinstance(source, str):
        raise ExpressionError(f"expression must be text, not {_type_name(source)}")
    try:
        names = frozenset(allowed_names)
    except TypeError as exc:
        raise ExpressionError(f"allowed names must be a set of strings ({exc})") from None
    return _compile_expression(source, names)


@functools.lru_cache(maxsize=1024)
def _compile_expression(source: str, allowed_names: frozenset[str]) -> Expression:
    try:
        tree, used = _parse_expression(source, allowed_names)
    except Exception as exc:
        raise ExpressionError(f"{_label('expression', source)}: {_describe(exc)}") from None
    return Expression(source, used, tree)


def validate_expression(source: str) -> str | None:
    """None when ``source`` is a valid expression, else the error message."""
    try:
        compile_expression(source)
    except ExpressionError as exc:
        return exc.message
    return None


# --------------------------------------------------------------------------- templates
@_named("range")
def _template_range(*args: Any) -> range:
    if not all(isinstance(arg, int) for arg in args):
        raise TypeError("range() arguments must be integers")
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:
        size = MAX_ITERATIONS + 1
    if size > MAX_ITERATIONS:
        _refuse(f"range() of more than {MAX_ITERATIONS:,} numbers is not allowed")
    return numbers


def _counted(items: Iterator[Any], cost: int) -> Iterator[Any]:
    for item in items:
        _iterate(cost)
        yield item


def _template_loop(iterable: Any, cost: int) -> Any:
    """Wraps every ``{% for %}`` iterable: each item costs the size of the loop body."""
    if isinstance(iterable, Undefined):
        return iterable  # Jinja raises the precise "is undefined" error itself
    return _counted(iter(iterable), cost)


def _template_concat(*values: Any) -> str:
    """The ``~`` operator, bounded like ``+``."""
    parts: list[str] = []
    total = 0
    for value in values:
        text = _to_text(value)
        total += len(text)
        _check_length(total)
        parts.append(text)
    result = "".join(parts)
    _charge(len(result))
    return result


_JINJA_COMPARISONS = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "lteq": "<=",
    "gt": ">",
    "gteq": ">=",
    "in": "in",
    "notin": "not in",
}


def _template_compare(left: Any, *pairs: Any) -> Any:
    """A Jinja comparison chain ``a op1 b op2 c``, bounded like expression comparisons."""
    for name, right in zip(pairs[0::2], pairs[1::2], strict=True):
        if not _compare(_JINJA_COMPARISONS[name], left, right):
            return False
        left = right
    return True


_TEMPLATE_HELPERS: tuple[Callable[..., Any], ...] = (
    _template_range,
    _template_loop,
    _template_concat,
    _template_compare,
)


def _text_filter(transform: Callable[[str], Any]) -> Callable[[Any], Any]:
    """Jinja's text filters call str() on anything; bound that first."""
    return lambda value: transform(_to_text(value))


def _filter_int(value: Any, default: int = 0, base: int = 10) -> Any:
    if isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
        _refuse(f"int of text longer than {MAX_NUMBER_TEXT} characters is not allowed")
    return jinja_filters.FILTERS["int"](value, default, base)


def _filter_round(value: Any, precision: int = 0, method: str = "common") -> Any:
    # jinja's ceil/floor rounding computes 10 ** precision
    if not isinstance(precision, int) or abs(precision) > 15:
        _refuse("round precision must be an integer between -15 and 15")
    return jinja_filters.FILTERS["round"](value, precision, method)


@pass_environment
def _filter_join(environment: Environment, value: Any, d: Any = "", attribute: Any = None) -> str:
    separator = _to_text(d)
    getter = None
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(environment, attribute)
    parts: list[str] = []
    total = 0
    for item in value:
        text = _to_text(getter(item) if getter is not None else item)
        total += len(text) + (len(separator) if parts else 0)
        _check_length(total)
        parts.append(text)
    result = separator.join(parts)
    _charge(len(result))
    return result


def _filter_replace(value: Any, old: Any, new: Any, count: Any = None) -> str:
    result = _str_replace(
        _to_text(value), _to_text(old), _to_text(new), -1 if count is None else count
    )
    _charge(len(result))
    return result


def _filter_list(value: Any) -> list[Any]:
    result = list(value)
    _charge(len(result))
    return result


def _sorting_filter(name: str) -> Callable[..., Any]:
    original = jinja_filters.FILTERS[name]

    @pass_environment
    def guarded(environment: Environment, value: Any, *args: Any, **kwargs: Any) -> Any:
        items = list(value)
        _charge_sort(items)
        _charge(len(items))
        result = original(environment, items, *args, **kwargs)
        return list(result) if isinstance(result, Iterator) else result

    return guarded


@pass_environment
def _filter_sum(environment: Environment, value: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(value)
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(environment, attribute)
        items = [getter(item) for item in items]
    return _add_numbers(items, start)


@pass_environment
def _filter_truncate(environment: Environment, value: Any, *args: Any, **kwargs: Any) -> Any:
    return jinja_filters.FILTERS["truncate"](environment, _to_text(value), *args, **kwargs)


def _jinja_builtins(table: Mapping[str, Any], names: str) -> dict[str, Callable[..., Any]]:
    return {name: table[name] for name in names.split()}


# Jinja's own filters where they cannot blow up; guarded versions of the rest of the useful
# ones; nothing else (no center/indent/wordwrap/format/pprint/tojson/batch/attr/...).
_TEMPLATE_FILTERS: dict[str, Callable[..., Any]] = {
    **_jinja_builtins(
        jinja_filters.FILTERS,
        "abs count d default first float items last length map reject rejectattr reverse"
        " select selectattr",
    ),
    "capitalize": _text_filter(str.capitalize),
    "int": _filter_int,
    "join": _filter_join,
    "list": _filter_list,
    "lower": _text_filter(str.lower),
    "max": _sorting_filter("max"),
    "min": _sorting_filter("min"),
    "replace": _filter_replace,
    "round": _filter_round,
    "sort": _sorting_filter("sort"),
    "string": _to_text,
    "sum": _filter_sum,
    "title": _text_filter(jinja_filters.FILTERS["title"]),
    "trim": lambda value, chars=None: _to_text(value).strip(chars),
    "truncate": _filter_truncate,
    "unique": _sorting_filter("unique"),
    "upper": _text_filter(str.upper),
    "wordcount": _text_filter(jinja_filters.FILTERS["wordcount"]),
}

_TEMPLATE_TESTS: dict[str, Callable[..., Any]] = {
    **_jinja_builtins(
        jinja_tests.TESTS,
        "boolean defined false float integer iterable mapping none number sameas sequence"
        " string true undefined",
    ),
    # jinja's versions compute `value % n`, which on text is %-formatting
    "odd": lambda value: _binop("%", value, 2) == 1,
    "even": lambda value: _binop("%", value, 2) == 0,
    "divisibleby": lambda value, num: _binop("%", value, num) == 0,
    "lower": _text_filter(str.islower),
    "upper": _text_filter(str.isupper),
}
for _symbol, _aliases in {
    "==": "== eq equalto",
    "!=": "!= ne",
    "<": "< lt lessthan",
    "<=": "<= le",
    ">": "> gt greaterthan",
    ">=": ">= ge",
    "in": "in",
}.items():
    for _alias in _aliases.split():
        _TEMPLATE_TESTS[_alias] = functools.partial(_compare, _symbol)

_REFUSED_TEMPLATE_NODES = {
    "Macro": "macros are not allowed",
    "CallBlock": "call blocks are not allowed",
    "Include": "include is not allowed",
    "Import": "import is not allowed",
    "FromImport": "import is not allowed",
    "Extends": "extends is not allowed",
    "Block": "blocks are not allowed",
    "AssignBlock": "block assignments ({% set x %}...{% endset %}) are not allowed",
    "FilterBlock": "filter blocks are not allowed",
    "ScopedEvalContextModifier": "autoescape blocks are not allowed",
    "EvalContextModifier": "autoescape changes are not allowed",
}


def _env_call(name: str, args: list[Any], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None, lineno=lineno)


class _TemplateShape:
    """Estimates, before anything runs, how large the values a template builds can get.

    ``{% set b = [a, a] %}`` makes ``b`` twice the size of ``a`` at the cost of a few
    characters, so forty such lines build a value of 2**40 shared items, which comparing,
    hashing or printing would walk in full. Each name's size is estimated from its
    definition (a list counts its items' sizes, a name the size of what it holds); a
    template whose estimate passes MAX_TEMPLATE_VALUE_SIZE is refused. Jinja scopes a
    ``{% set %}`` inside a loop to one iteration, so loops cannot grow values further.
    """

    def check(self, tree: nodes.Template) -> None:
        self._statements(tree.body, {})

    def _statements(self, body: list[nodes.Node], sizes: dict[str, int]) -> None:
        for node in body:
            self._statement(node, sizes)

    def _statement(self, node: nodes.Node, sizes: dict[str, int]) -> None:
        if isinstance(node, nodes.Assign):
            self._bind(node.target, self._size(node.node, sizes), sizes)
        elif isinstance(node, nodes.For):
            inner = dict(sizes)
            self._bind(node.target, self._size(node.iter, sizes), inner)
            if node.test is not None:
                self._size(node.test, inner)
            self._statements(node.body, inner)
            self._statements(node.else_, dict(sizes))
        elif isinstance(node, nodes.If):
            self._size(node.test, sizes)
            elifs: list[list[nodes.Node]] = [[branch] for branch in node.elif_]
            branches = [node.body, *elifs, node.else_]
            results = []
            for branch in branches:
                copy = dict(sizes)
                self._statements(branch, copy)
                results.append(copy)
            for result in results:  # an {% if %} does not scope: keep the largest outcome
                for name, size in result.items():
                    sizes[name] = max(size, sizes.get(name, 0))
        elif isinstance(node, nodes.With):
            inner = dict(sizes)
            for target, value in zip(node.targets, node.values, strict=True):
                self._bind(target, self._size(value, sizes), inner)
            self._statements(node.body, inner)
        else:
            for child in node.iter_child_nodes():
                if isinstance(child, nodes.Expr):
                    self._size(child, sizes)
                else:
                    self._statement(child, sizes)

    @staticmethod
    def _bind(target: nodes.Node, size: int, sizes: dict[str, int]) -> None:
        names = [target] if isinstance(target, nodes.Name) else target.find_all(nodes.Name)
        for name in names:
            sizes[name.name] = size

    def _size(self, node: nodes.Node, sizes: dict[str, int]) -> int:
        size = self._estimate(node, sizes)
        if size > MAX_TEMPLATE_VALUE_SIZE:
            _refuse(
                f"line {node.lineno}: builds values that are too large (about {size:,} "
                f"shared items, limit {MAX_TEMPLATE_VALUE_SIZE:,}); lists that repeat "
                "a name grow exponentially when nested"
            )
        return size

    def _estimate(self, node: nodes.Node, sizes: dict[str, int]) -> int:
        if isinstance(node, nodes.Name):
            return sizes.get(node.name, 1)
        if isinstance(node, (nodes.List, nodes.Tuple)):
            return 1 + sum(self._size(item, sizes) for item in node.items)
        if isinstance(node, nodes.Dict):
            return 1 + sum(
                self._size(pair.key, sizes) + self._size(pair.value, sizes) for pair in node.items
            )
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            for child in node.iter_child_nodes():
                self._size(child, sizes)
            return self._size(node.node, sizes)  # a part is no larger than the whole
        if isinstance(node, nodes.CondExpr):
            self._size(node.test, sizes)
            other = 1 if node.expr2 is None else self._size(node.expr2, sizes)
            return max(self._size(node.expr1, sizes), other)
        if isinstance(node, (nodes.And, nodes.Or)):
            return max(self._size(node.left, sizes), self._size(node.right, sizes))
        if isinstance(node, (nodes.Compare, nodes.Concat, nodes.Test, nodes.Not)):
            for child in node.iter_child_nodes():
                self._size(child, sizes)
            return 1  # a bool or a string
        # Filters, calls and arithmetic: at most the sum of what goes in (`x|list`, `a + b`,
        # `d.get(k, default)`, keyword arguments too); repetition with * is bounded when it
        # runs.
        children = [
            child.value if isinstance(child, nodes.Keyword) else child
            for child in node.iter_child_nodes()
        ]
        return 1 + sum(
            self._size(child, sizes) for child in children if isinstance(child, nodes.Expr)
        )


class _TemplateGuard:
    """Rejects unsafe template syntax and routes loops, ``~`` and comparisons via guards.

    A small tree rewriter of our own over Jinja's public node API (``iter_fields``), so
    nothing here depends on Jinja's internal visitor or parser hooks.
    """

    def visit(self, node: nodes.Node) -> Any:
        refused = _REFUSED_TEMPLATE_NODES.get(type(node).__name__)
        if refused is not None:
            _refuse(f"line {node.lineno}: {refused}")
        rewrite = getattr(self, f"visit_{type(node).__name__}", None)
        if rewrite is None:
            return self.generic_visit(node)
        return rewrite(node)

    def generic_visit(self, node: nodes.Node) -> nodes.Node:
        for name, value in node.iter_fields():
            if isinstance(value, list):
                value[:] = [
                    self.visit(item) if isinstance(item, nodes.Node) else item for item in value
                ]
            elif isinstance(value, nodes.Node):
                setattr(node, name, self.visit(value))
        return node

    def visit_For(self, node: nodes.For) -> nodes.For:
        if node.recursive:
            _refuse(f"line {node.lineno}: recursive loops are not allowed")
        self.generic_visit(node)
        per_item = [*node.body, *([node.test] if node.test is not None else [])]
        cost = 1 + sum(1 + sum(1 for _ in child.find_all(nodes.Node)) for child in per_item)
        node.iter = _env_call("flowcli_loop", [node.iter, nodes.Const(cost)], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        self.generic_visit(node)
        return _env_call("flowcli_concat", list(node.nodes), node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Call:
        self.generic_visit(node)
        args: list[Any] = [node.expr]
        for operand in node.ops:
            args += [nodes.Const(operand.op), operand.expr]
        return _env_call("flowcli_compare", args, node.lineno)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Expr:
        # Tuples are hashable, so nested ones could be hashed at enormous cost as dict keys;
        # a list behaves the same everywhere else in templates.
        self.generic_visit(node)
        if node.ctx == "load":
            return nodes.List(node.items, lineno=node.lineno)
        return node

    def visit_Name(self, node: nodes.Name) -> nodes.Name:
        # `self` is Jinja's reference to the template's blocks, not a flow name
        if node.name == "self":
            _refuse(f"line {node.lineno}: unknown name 'self'")
        return node

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Getattr:
        self._check_attribute(node.attr, node.lineno)
        self.generic_visit(node)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Getitem:
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            self._check_attribute(node.arg.value, node.lineno)
        self.generic_visit(node)
        return node

    def visit_Filter(self, node: nodes.Filter) -> nodes.Filter:
        if node.name not in _TEMPLATE_FILTERS:
            _refuse(f"line {node.lineno}: filter {node.name!r} is not allowed")
        self.generic_visit(node)
        return node

    def visit_Test(self, node: nodes.Test) -> nodes.Test:
        if node.name not in _TEMPLATE_TESTS:
            _refuse(f"line {node.lineno}: test {node.name!r} is not allowed")
        self.generic_visit(node)
        return node

    @staticmethod
    def _check_attribute(name: str, lineno: int) -> None:
        if name.startswith("_"):
            _refuse(f"line {lineno}: attribute {name!r} is not allowed ({_PRIVATE_HINT})")
        if name in _FORMAT_METHODS:
            _refuse(f"line {lineno}: method {name!r} is not allowed")


class _SandboxEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox narrowed to our names, methods, filters and limits."""

    # all arithmetic goes through _binop (bounded * and **, no %-formatting)
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            finalize=_to_text,  # bounds what every {{ ... }} turns into text
            optimized=False,  # no constant folding: nothing user-written runs at compile time
            auto_reload=False,
        )
        self.filters = dict(_TEMPLATE_FILTERS)
        self.tests = dict(_TEMPLATE_TESTS)
        # no lipsum/cycler/joiner/namespace/dict: range is all templates need
        self.globals = {"range": _template_range}
        self.flowcli_loop = _template_loop
        self.flowcli_concat = _template_concat
        self.flowcli_compare = _template_compare

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_") or not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, MessageView):
            return attr in _MESSAGE_FIELDS
        if isinstance(obj, LoopContext):
            return attr in _LOOP_ATTRIBUTES
        table = _method_table(obj)
        return table is not None and attr in table

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        # Decide by type and name *before* touching the attribute: Jinja's sandbox would read
        # it first (running any property) and only then ask is_safe_attribute.
        if isinstance(obj, Undefined) or self.is_safe_attribute(obj, attribute, None):
            return super().getattr(obj, attribute)
        if isinstance(obj, Mapping):  # `vars.mood`: Jinja falls back to the key
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        if (obj is None or isinstance(obj, MessageView)) and not attribute.startswith("_"):
            return self.undefined(obj=obj, name=attribute)
        return self.unsafe_undefined(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        if isinstance(obj, Mapping):
            _charge_hash(argument)
        if isinstance(obj, (*_SEQUENCES, Mapping, range, Undefined)):
            try:
                item = obj[argument]
            except (TypeError, LookupError):
                pass
            else:
                if isinstance(argument, slice) and isinstance(item, _SEQUENCES):
                    _charge(len(item))
                return item
        if isinstance(argument, str):  # `x['name']` falls back to the attribute, as in Jinja
            return self.getattr(obj, argument)
        return self.undefined(obj=obj, name=argument)

    def wrap_str_format(self, value: Any) -> None:
        # Jinja would hand out a sandboxed str.format; we do not offer format at all.
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return _binop(operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        kwargs.pop("_loop_vars", None)  # added by Jinja's code generator inside loops/blocks
        kwargs.pop("_block_vars", None)
        if any(obj is helper for helper in _TEMPLATE_HELPERS):
            return obj(*args, **kwargs)
        if isinstance(obj, Undefined):
            return obj(*args, **kwargs)  # raises the precise undefined/unsafe error
        if isinstance(obj, types.BuiltinMethodType) and _method_table(obj.__self__) is not None:
            if kwargs:
                _refuse("keyword arguments are not allowed in method calls")
            return _call_method(obj.__self__, obj.__name__, list(args))
        if isinstance(obj, types.MethodType) and isinstance(obj.__self__, LoopContext):
            if obj.__name__ == "changed":
                # loop.changed(x) compares x with the previous call's value: at most the
                # size of x, which shared nested lists can make enormous
                cost = _measure(list(args))[0]
                if cost > MAX_COMPARE_WORK:
                    _refuse("values are too large to compare")
                _walk(cost)
            return super().call(context, obj, *args, **kwargs)
        _refuse(f"calling a {_type_name(obj)} value is not allowed")


@functools.cache
def _environment() -> _SandboxEnvironment:
    return _SandboxEnvironment()


class Template:
    """A validated template; immutable and safe to share. Build with compile_template."""

    __slots__ = ("source", "names_used", "_template")

    def __init__(self, source: str, names_used: frozenset[str], template: JinjaTemplate) -> None:
        self.source = source
        self.names_used = names_used
        self._template = template

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, names: Mapping[str, Any]) -> str:
        """The rendered text; every failure is an ExpressionError."""
        token = _BUDGET.set(_Budget())
        stream: Iterator[str] | None = None
        try:
            # Only the names the template reads, so a lazy mapping loads nothing else.
            context: dict[str, Any] = {}
            for name in self.names_used:
                # a missing one is reported by StrictUndefined if the template reaches it
                with contextlib.suppress(KeyError):
                    context[name] = names[name]
            stream = self._template.generate(context)
            chunks: list[str] = []
            total = 0
            for chunk in stream:
                _tick()
                total += len(chunk)
                if total > MAX_OUTPUT_LENGTH:
                    _refuse(f"output is longer than {MAX_OUTPUT_LENGTH:,} characters")
                chunks.append(chunk)
            return "".join(chunks)
        except Exception as exc:
            _reraise_foreign(exc)
            raise ExpressionError(f"{_label('template', self.source)}: {_describe(exc)}") from exc
        finally:
            if isinstance(stream, types.GeneratorType):
                stream.close()
            _BUDGET.reset(token)


def compile_template(source: str, *, allowed_names: frozenset[str] = TEMPLATE_NAMES) -> Template:
    """Validate and compile ``source`` once (cached); raises ExpressionError."""
    if not isinstance(source, str):
        raise ExpressionError(f"template must be text, not {_type_name(source)}")
    try:
        names = frozenset(allowed_names)
    except TypeError as exc:
        raise ExpressionError(f"allowed names must be a set of strings ({exc})") from None
    return _compile_template(source, names)


@functools.lru_cache(maxsize=256)
def _compile_template(source: str, allowed_names: frozenset[str]) -> Template:
    try:
        if len(source) > MAX_TEMPLATE_LENGTH:
            _refuse(
                f"template is too long ({len(source):,} characters, limit {MAX_TEMPLATE_LENGTH:,})"
            )
        environment = _environment()
        # Only Jinja's public API: parse, check and rewrite the tree, compile the tree.
        tree = environment.parse(source)
        _TemplateShape().check(tree)
        tree = _TemplateGuard().visit(tree)
        tree.set_environment(environment)
        undeclared = meta.find_undeclared_variables(tree)
        unknown = sorted(undeclared - allowed_names - set(environment.globals))
        if unknown:
            listed = ", ".join(repr(name) for name in unknown)
            known = ", ".join(sorted(allowed_names))
            _refuse(
                f"unknown name{'s' if len(unknown) > 1 else ''} {listed} (known names: {known})"
            )
        compiled = environment.from_string(tree)
    except Exception as exc:
        raise ExpressionError(f"{_label('template', source)}: {_describe(exc)}") from None
    return Template(source, frozenset(undeclared & allowed_names), compiled)


def validate_template(source: str) -> str | None:
    """None when ``source`` is a valid template, else the error message."""
    try:
        compile_template(source)
    except ExpressionError as exc:
        return exc.message
    return None
