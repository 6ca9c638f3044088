"""The functions, methods and operators both languages allow, each bounded before it runs.

Expressions call these directly; templates reach them through the Jinja sandbox hooks in
templates.py. Anything not listed here cannot be called.
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Mapping
from typing import Any

from flowcli.sandbox import limits
from flowcli.sandbox.budget import (
    CONTAINERS,
    SEQUENCES,
    charge,
    charge_comparison,
    charge_hash,
    charge_membership,
    charge_sort,
    check_length,
    refuse,
    to_text,
    type_name,
)


# --------------------------------------------------------------------------- operators
def _repeat(sequence: Any, count: int) -> Any:
    count = max(count, 0)
    check_length(len(sequence) * count)
    if (
        count > 1
        and not isinstance(sequence, str)
        and any(isinstance(item, CONTAINERS) for item in sequence)
    ):
        # every copy would share the same inner objects: tiny to build, enormous to print
        refuse("repeating a list that contains lists or dicts is not allowed")
    result = sequence * count
    charge(len(result))
    return result


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


_PLAIN_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "-": op.sub,
    "/": op.truediv,
    "//": op.floordiv,
}


def binop(operator: str, left: Any, right: Any) -> Any:
    """The arithmetic operators of both languages, bounded before they run."""
    if operator == "+":
        if isinstance(left, SEQUENCES) and isinstance(right, SEQUENCES):
            check_length(len(left) + len(right))
            result = op.add(left, right)
            charge(len(result))
            return result
        return left + right
    if operator == "*":
        if isinstance(left, SEQUENCES) and isinstance(right, int):
            return _repeat(left, right)
        if isinstance(right, SEQUENCES) and isinstance(left, int):
            return _repeat(right, left)
        if _int_bits(left) + _int_bits(right) > limits.MAX_INT_BITS:
            refuse(f"number too large (over {limits.MAX_INT_BITS:,} bits)")
        return left * right
    if operator == "**":
        # bit_length(a) * b bounds the size of a ** b; 1, 0, -1 and negative b stay small
        bits = _int_bits(left)
        if isinstance(right, int) and right > 0 and bits > 1 and bits * right > limits.MAX_INT_BITS:
            refuse(f"number too large (over {limits.MAX_INT_BITS:,} bits)")
        return left**right
    if operator == "%":
        if isinstance(left, (str, bytes)):
            refuse("string formatting with % is not allowed")
        return left % right
    plain = _PLAIN_BINOPS.get(operator)
    if plain is None:
        refuse(f"operator {operator} is not allowed")
    return plain(left, right)


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": op.eq,
    "!=": op.ne,
    "<": op.lt,
    "<=": op.le,
    ">": op.gt,
    ">=": op.ge,
}


def compare(operator: str, left: Any, right: Any) -> Any:
    """The comparisons of both languages, refusing ones that would walk enormous values."""
    if operator in ("in", "not in"):
        charge_membership(left, right)
        found = left in right
        return found if operator == "in" else not found
    charge_comparison(left, right)
    return _COMPARISONS[operator](left, right)


# --------------------------------------------------------------------------- methods
def named(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a wrapper the public name users know, so TypeError messages read naturally."""

    def rename(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__name__ = name
        function.__qualname__ = name
        return function

    return rename


@named("replace")
def str_replace(text: str, old: str, new: str, count: int = -1) -> str:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        raise TypeError("replace() arguments must be strings")
    if not isinstance(count, int):
        raise TypeError("replace() count must be an integer")
    occurrences = text.count(old) if old else len(text) + 1
    if count >= 0:
        occurrences = min(occurrences, count)
    check_length(len(text) + occurrences * (len(new) - len(old)))
    return text.replace(old, new, count)


@named("join")
def _str_join(separator: str, items: Any) -> str:
    parts: list[str] = []
    total = 0
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"join() expects strings, found a {type_name(item)}")
        total += len(item) + (len(separator) if parts else 0)
        check_length(total)
        parts.append(item)
    return separator.join(parts)


@named("get")
def _mapping_get(mapping: Mapping[Any, Any], key: Any, default: Any = None) -> Any:
    charge_hash(key)
    return mapping.get(key, default)


@named("keys")
def _mapping_keys(mapping: Mapping[Any, Any]) -> list[Any]:
    return list(mapping.keys())


@named("values")
def _mapping_values(mapping: Mapping[Any, Any]) -> list[Any]:
    return list(mapping.values())


@named("items")
def _mapping_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    return list(mapping.items())


@named("count")
def _sequence_count(sequence: Any, value: Any) -> int:
    charge_membership(value, sequence)
    return int(sequence.count(value))


@named("index")
def _sequence_index(sequence: Any, value: Any, *bounds: int) -> int:
    charge_membership(value, sequence)
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
    "replace": str_replace,
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
METHOD_NAMES = frozenset(_STR_METHODS) | frozenset(_MAPPING_METHODS) | frozenset(_SEQUENCE_METHODS)


def method_table(value: Any) -> dict[str, Callable[..., Any]] | None:
    if isinstance(value, str):
        return _STR_METHODS
    if isinstance(value, Mapping):
        return _MAPPING_METHODS
    if isinstance(value, (list, tuple)):
        return _SEQUENCE_METHODS
    return None


def call_method(value: Any, name: str, args: list[Any]) -> Any:
    table = method_table(value)
    method = table.get(name) if table is not None else None
    if method is None:
        refuse(f"method {name!r} is not allowed on {type_name(value)} values")
    result = method(value, *args)
    if isinstance(result, SEQUENCES):
        charge(len(result))
    return result


# --------------------------------------------------------------------------- functions
@named("int")
def _safe_int(value: Any = 0, *base: int) -> int:
    if isinstance(value, str) and len(value) > limits.MAX_NUMBER_TEXT:
        refuse(f"int() of text longer than {limits.MAX_NUMBER_TEXT} characters is not allowed")
    return int(value, *base)


@named("str")
def _safe_str(value: Any = "") -> str:
    return to_text(value)


def _items_of(name: str, args: tuple[Any, ...]) -> list[Any]:
    if not args:
        raise TypeError(f"{name}() expected at least 1 argument")
    return list(args[0]) if len(args) == 1 else list(args)


@named("min")
def _safe_min(*args: Any) -> Any:
    items = _items_of("min", args)
    charge_sort(items)
    return min(items)


@named("max")
def _safe_max(*args: Any) -> Any:
    items = _items_of("max", args)
    charge_sort(items)
    return max(items)


def add_numbers(items: list[Any], start: Any) -> Any:
    # only numbers: sum() over lists or strings is quadratic and can build huge values
    for item in (start, *items):
        if not isinstance(item, (int, float)):
            raise TypeError(f"sum() only adds numbers, found a {type_name(item)}")
    return sum(items, start)


@named("sum")
def _safe_sum(items: Any, start: Any = 0) -> Any:
    return add_numbers(list(items), start)


@named("sorted")
def _safe_sorted(items: Any) -> list[Any]:
    values = list(items)
    charge_sort(values)
    charge(len(values))
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
