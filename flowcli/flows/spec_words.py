"""How a flow's problems are worded: values quoted on one line, "did you mean", pydantic's
errors in flowcli's words, and each problem as ``{source}: {path}: {message}``, in file
order (flowcli.flows.spec validates; flowcli.flows.spec_checks checks across steps)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from flowcli.flows.vocabulary import Loc, Problem

# The keys each place of a flow document takes, by path shape ("#": a list index,
# "*": a role name); flowcli.flows.spec builds it from its models.
AllowedKeys = Mapping[tuple[str, ...], Sequence[str]]


def quote_text(text: str, limit: int = 40) -> str:
    # repr() escapes newlines, so a message quoting user text stays on one line.
    return repr(text[:limit]) + "…" if len(text) > limit else repr(text)


def show_value(value: Any) -> str:
    """A value as a message quotes it: YAML-ish scalars, never a whole container."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # Python refuses to print integers past ~4300 digits; YAML can still spell one.
        return str(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return quote_text(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a value of type {type(value).__name__}"


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def did_you_mean(word: Any, candidates: Collection[str]) -> str:
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


# --- pydantic's errors in flowcli's words ------------------------------------------

_TYPE_WORDS = {
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "float_type": "a number",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}
# What a mapping or list in a given place should look like, by path shape (# = an index).
_CONTAINER_WORDS: dict[tuple[str, ...], str] = {
    ("steps",): "a list of steps",
    ("steps", "#"): "a step (a mapping with speaker_role_ref, task_type, ...)",
    ("roles",): "a mapping of role names to {prompt: ...}",
    ("roles", "*"): "a role (a mapping with a prompt)",
    ("steps", "#", "logic_config"): "a mapping (condition, next_step_order, max_loops, ...)",
    ("steps", "#", "logic_config", "exit_condition"): (
        "a mapping like {type: expression, expr: ...} or {type: llm_accept_flag}"
    ),
    ("termination_config",): "a mapping (max_rounds, max_steps, end_condition)",
    ("responder",): "a mapping like {type: template, template: ...}",
}


def _shape(loc: Loc) -> tuple[str, ...]:
    if len(loc) == 2 and loc[0] == "roles":
        return ("roles", "*")
    return tuple("#" if isinstance(part, int) else str(part) for part in loc)


def _unknown_key(key: Any, parent: Loc, allowed_at: AllowedKeys) -> str:
    allowed = list(allowed_at.get(_shape(parent), ()))
    hint = did_you_mean(key, allowed)
    if not hint and allowed:
        hint = f" (allowed: {', '.join(allowed)})"
    if not isinstance(key, str):
        return f"unknown key {show_value(key)}: keys must be names (strings){hint}"
    return f"unknown key {show_value(key)}{hint}"


def problem_from_pydantic(error: Any, allowed_at: AllowedKeys) -> Problem:
    """One pydantic error as (where, what) in flowcli's words. ``allowed_at``: the keys
    each place of the document takes, by path shape (for "did you mean")."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "flowcli":
        return loc, str(ctx["message"])
    if kind in ("extra_forbidden", "invalid_key"):
        return loc[:-1], _unknown_key(loc[-1], loc[:-1], allowed_at)
    if loc and loc[-1] == "[key]":
        what = "a role name" if loc[:-2] == ("roles",) else "a key"
        return loc[:-2], f"{what} must be a string, got {show_value(loc[-2])} (quote it)"
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}"
    if kind in _TYPE_WORDS:
        expected = _TYPE_WORDS[kind]
        if kind in ("dict_type", "model_type", "model_attributes_type", "list_type"):
            expected = _CONTAINER_WORDS.get(_shape(loc), expected)
        message = f"expected {expected}, got {show_value(value)}"
        if kind == "string_type" and not isinstance(value, (dict, list, type(None))):
            message += " (quote it to make it text)"
        return loc, message
    if kind == "string_too_short":
        return loc, "must not be empty"
    if kind == "too_short" and loc == ("steps",):
        return loc, "the flow has no steps; add at least one"
    if kind == "too_short":
        return loc, f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "?"
        return loc, f"is too long: {length} characters, at most {ctx.get('max_length')}"
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        return loc, f"must be {sign} {ctx.get(key)}, got {show_value(value)}"
    if kind == "finite_number":
        return loc, f"must be a finite number, got {show_value(value)}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(value, options)
        return loc, f"expected one of {', '.join(options)}, got {show_value(value)}{hint}"
    return loc, str(error.get("msg", "invalid value"))


# --- a problem as one line -------------------------------------------------------------


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{show_value(part)}]"
    return text


def problem_order(problem: Problem) -> tuple[int, int, int]:
    # Top-level findings first, then step by step in file order, then whole-list ones;
    # within a place an unknown key comes first, since a typo explains a missing key.
    loc, message = problem
    typo_first = 0 if message.startswith("unknown key") else 1
    if loc and loc[0] == "steps":
        if len(loc) > 1 and isinstance(loc[1], int):
            return (1, loc[1], typo_first)
        return (2, 0, typo_first)
    return (0, 0, typo_first)


def render_problem(source: str, loc: Loc, message: str) -> str:
    where = format_loc(loc)
    return one_line(f"{source}: {where}: {message}" if where else f"{source}: {message}")
