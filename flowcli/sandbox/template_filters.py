"""The filters and tests templates may use: Jinja's own where they cannot blow up, guarded
versions of the rest of the useful ones, nothing else.

Each guarded one bounds its work before it runs (budget.py), as expressions' functions
and methods do (operations.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import pass_environment
from jinja2 import tests as jinja_tests
from jinja2.environment import Environment

from flowcli.sandbox import limits
from flowcli.sandbox.budget import charge, charge_sort, check_length, refuse, to_text
from flowcli.sandbox.operations import add_numbers, binop, compare, str_replace


def _text_filter(transform: Callable[[str], Any]) -> Callable[[Any], Any]:
    """Jinja's text filters call str() on anything; bound that first."""
    return lambda value: transform(to_text(value))


def _filter_int(value: Any, default: int = 0, base: int = 10) -> Any:
    if isinstance(value, str) and len(value) > limits.MAX_NUMBER_TEXT:
        refuse(f"int of text longer than {limits.MAX_NUMBER_TEXT} characters is not allowed")
    return jinja_filters.FILTERS["int"](value, default, base)


def _filter_round(value: Any, precision: int = 0, method: str = "common") -> Any:
    # jinja's ceil/floor rounding computes 10 ** precision
    if not isinstance(precision, int) or abs(precision) > 15:
        refuse("round precision must be an integer between -15 and 15")
    return jinja_filters.FILTERS["round"](value, precision, method)


@pass_environment
def _filter_join(environment: Environment, value: Any, d: Any = "", attribute: Any = None) -> str:
    separator = to_text(d)
    getter = None
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(environment, attribute)
    parts: list[str] = []
    total = 0
    for item in value:
        text = to_text(getter(item) if getter is not None else item)
        total += len(text) + (len(separator) if parts else 0)
        check_length(total)
        parts.append(text)
    result = separator.join(parts)
    charge(len(result))
    return result


def _filter_replace(value: Any, old: Any, new: Any, count: Any = None) -> str:
    result = str_replace(to_text(value), to_text(old), to_text(new), -1 if count is None else count)
    charge(len(result))
    return result


def _filter_list(value: Any) -> list[Any]:
    result = list(value)
    charge(len(result))
    return result


def _sorting_filter(name: str) -> Callable[..., Any]:
    original = jinja_filters.FILTERS[name]

    @pass_environment
    def guarded(environment: Environment, value: Any, *args: Any, **kwargs: Any) -> Any:
        items = list(value)
        charge_sort(items)
        charge(len(items))
        result = original(environment, items, *args, **kwargs)
        return list(result) if isinstance(result, Iterator) else result

    return guarded


@pass_environment
def _filter_sum(environment: Environment, value: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(value)
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(environment, attribute)
        items = [getter(item) for item in items]
    return add_numbers(items, start)


@pass_environment
def _filter_truncate(environment: Environment, value: Any, *args: Any, **kwargs: Any) -> Any:
    return jinja_filters.FILTERS["truncate"](environment, to_text(value), *args, **kwargs)


def _jinja_builtins(table: Mapping[str, Any], names: str) -> dict[str, Callable[..., Any]]:
    return {name: table[name] for name in names.split()}


# Jinja's own filters where they cannot blow up; guarded versions of the rest of the useful
# ones; nothing else (no center/indent/wordwrap/format/pprint/tojson/batch/attr/...).
TEMPLATE_FILTERS: dict[str, Callable[..., Any]] = {
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
    "string": to_text,
    "sum": _filter_sum,
    "title": _text_filter(jinja_filters.FILTERS["title"]),
    "trim": lambda value, chars=None: to_text(value).strip(chars),
    "truncate": _filter_truncate,
    "unique": _sorting_filter("unique"),
    "upper": _text_filter(str.upper),
    "wordcount": _text_filter(jinja_filters.FILTERS["wordcount"]),
}

TEMPLATE_TESTS: dict[str, Callable[..., Any]] = {
    **_jinja_builtins(
        jinja_tests.TESTS,
        "boolean defined false float integer iterable mapping none number sameas sequence"
        " string true undefined",
    ),
    # jinja's versions compute `value % n`, which on text is %-formatting
    "odd": lambda value: binop("%", value, 2) == 1,
    "even": lambda value: binop("%", value, 2) == 0,
    "divisibleby": lambda value, num: binop("%", value, num) == 0,
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
        TEMPLATE_TESTS[_alias] = functools.partial(compare, _symbol)
