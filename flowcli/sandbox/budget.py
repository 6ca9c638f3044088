"""What one evaluation or render may spend, and the guards that charge it before work runs.

Two kinds of limit: an allocation budget (what gets built) and a work budget (what gets
walked: loop iterations, and the items that hashing, comparing, sorting and printing visit,
shared references counted each time they occur), plus a CPU-time deadline checked while an
evaluation runs. A refusal is raised as Refused and becomes an ExpressionError at the
boundary (expressions.py, templates.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NoReturn

from flowcli.sandbox import limits
from flowcli.sandbox.names import MessageView


class Refused(Exception):
    """Internal: the sandbox refused something; turned into ExpressionError at the boundary."""


def refuse(message: str) -> NoReturn:
    raise Refused(message)


# --------------------------------------------------------------------------- budget
_CLOCK_INTERVAL = 64


@dataclass(slots=True)
class Budget:
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
CURRENT_BUDGET: ContextVar[Budget | None] = ContextVar("flowcli_expression_budget", default=None)


def spend(budget: Budget, ticks: int) -> None:
    """Count work done; every _CLOCK_INTERVAL ticks, check the CPU deadline."""
    budget.ticks += ticks
    if budget.ticks >= budget.next_look:
        budget.next_look = budget.ticks + _CLOCK_INTERVAL
        now = time.thread_time()
        if budget.deadline is None:
            budget.deadline = now + limits.MAX_CPU_SECONDS
        elif now > budget.deadline:
            refuse(f"takes too long (more than {limits.MAX_CPU_SECONDS:g} s of CPU time)")


def tick() -> None:
    """A guard ran (guards are where long work can happen)."""
    budget = CURRENT_BUDGET.get()
    if budget is not None:
        spend(budget, 1)


def charge(size: int) -> None:
    budget = CURRENT_BUDGET.get()
    if budget is not None:
        budget.allocated += size
        if budget.allocated > limits.MAX_ALLOCATION:
            refuse(
                f"creates too much data (more than {limits.MAX_ALLOCATION:,} characters or items)"
            )
        spend(budget, 1 + size // 1024)


def iterate(cost: int) -> None:
    budget = CURRENT_BUDGET.get()
    if budget is None:
        return
    budget.iterations += 1
    budget.work += cost
    if budget.iterations > limits.MAX_ITERATIONS:
        refuse(f"loops run more than {limits.MAX_ITERATIONS:,} times")
    if budget.work > limits.MAX_WORK:
        refuse(f"loops do too much work (more than {limits.MAX_WORK:,} steps)")
    spend(budget, 1 + cost // 16)


def walk(cost: int) -> None:
    """Charge work that walks values (hashing, comparing, sorting, printing) *before* it runs."""
    budget = CURRENT_BUDGET.get()
    if budget is None:
        return
    budget.walked += cost
    if budget.walked > limits.MAX_WALK:
        refuse(
            f"walks too much data (more than {limits.MAX_WALK:,} items hashed, compared, sorted "
            "or printed)"
        )
    spend(budget, 1 + cost // 256)


# --------------------------------------------------------------------------- measuring values
# Jinja's Undefined raises its own precise error when turned into text. Such values exist
# only while a template renders, so templates.py registers the type when it loads; this
# module (and every expression) stays free of Jinja.
_undefined_types: tuple[type, ...] = ()


def register_undefined_type(kind: type) -> None:
    global _undefined_types
    _undefined_types = (*_undefined_types, kind)


SEQUENCES = (str, list, tuple)
CONTAINERS = (list, tuple, dict)
_WALKED = (str, list, tuple, dict)  # values whose comparison walks their contents


def type_name(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, MessageView):
        return "message"
    return type(value).__name__


def check_length(size: int) -> None:
    if size > limits.MAX_STRING_LENGTH:
        refuse(f"result would be longer than {limits.MAX_STRING_LENGTH:,} characters or items")


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
    if isinstance(value, _undefined_types):
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


def measure(value: Any) -> tuple[int, int]:
    """(size, text length) of ``value`` as hashing, comparing or ``str()`` would walk it.

    Shared references count again each time they occur (``(t, t)`` costs twice ``t``), as
    they do for the work those operations do, so a small object graph can have an enormous
    size. Each object is measured once per evaluation (memoised by id), so the measuring
    itself costs only the number of distinct objects. Iterative: deep nesting is fine.
    """
    atom = _measure_atom(value)
    if atom is not None:
        return atom
    budget = CURRENT_BUDGET.get()
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
            refuse("a value contains itself")
        in_progress.add(key)
        stack.append((item, True))
        for child in _children(item):
            if _measure_atom(child) is None and id(child) not in memo:
                stack.append((child, False))
    found_size, found_text = memo[id(value)][1:]
    return found_size, found_text


def to_text(value: Any, convert: Callable[[Any], str] = str) -> str:
    """``str(value)`` (or repr/ascii) without building a gigantic string first."""
    if isinstance(value, _undefined_types):
        return str(value)  # StrictUndefined raises its own precise error here
    if convert is str and isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return convert(value)
    if callable(value):
        refuse("a function cannot be turned into text")
    size, text = measure(value)
    if text > limits.MAX_STRING_LENGTH:
        refuse(
            f"value is too large to turn into text (over {limits.MAX_STRING_LENGTH:,} characters)"
        )
    walk(size)
    result = convert(value)
    check_length(len(result))  # repr/ascii escapes can still grow a string a few times
    charge(len(result))
    return result


def charge_comparison(left: Any, right: Any) -> None:
    """Charge ``left == right`` (or ``<`` ...) before it runs.

    Equality and ordering stop at the first difference and never descend further than
    the smaller operand, so the smaller expanded size bounds their work.
    """
    if not isinstance(left, _WALKED) or type(left) is not type(right):
        # numbers, None, messages, or two different types: decided without walking
        tick()
        return
    cost = min(measure(left)[0], measure(right)[0])
    if cost > limits.MAX_COMPARE_WORK and isinstance(left, CONTAINERS):
        refuse("values are too large to compare")
    walk(cost)


def charge_hash(key: Any) -> None:
    """Charge hashing ``key`` (a dict lookup): a tuple's hash walks all of it."""
    size = measure(key)[0]
    if size > limits.MAX_COMPARE_WORK:
        refuse("value is too large to look up")
    walk(size)


def charge_membership(needle: Any, haystack: Any) -> None:
    """Charge ``needle in haystack`` before it runs."""
    if isinstance(haystack, Mapping):
        charge_hash(needle)
    elif isinstance(haystack, (list, tuple)):
        # each item is compared with the needle, at most the smaller of the two
        cost = min(measure(haystack)[0], len(haystack) * measure(needle)[0])
        if cost > limits.MAX_COMPARE_WORK and isinstance(needle, CONTAINERS):
            refuse("values are too large to compare")
        walk(cost + 1)
    elif isinstance(haystack, str):
        walk(1 + len(haystack) // 64)
    elif isinstance(haystack, range):
        walk(1 if isinstance(needle, int) else len(haystack))
    else:
        tick()


def charge_sort(items: list[Any]) -> None:
    """Charge sorting ``items`` (or min/max/unique): about n log n comparisons."""
    size = measure(items)[0]
    if size > limits.MAX_COMPARE_WORK and any(isinstance(item, CONTAINERS) for item in items):
        refuse("values are too large to compare")
    walk(size * max(1, len(items).bit_length()))
