"""The flow document: its pydantic model, whole-document validation, loading and export.

Every problem in a flow is reported at once, one line each, as
``{source}: {path}: {what was expected}`` (``flow.yaml: steps[2].logic_config.max_loops: …``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowcli.errors import FlowcliError, FlowValidationError
from flowcli.flows.yaml_io import dump_flow_yaml, parse_flow_text

__all__ = [
    "CONTEXT_KEYWORDS",
    "FLOW_TYPES",
    "STEP_ALIASES",
    "TASK_TYPES",
    "ExitCondition",
    "FlowDocument",
    "LogicConfig",
    "ResponderSpec",
    "RoleSpec",
    "StepSpec",
    "TerminationConfig",
    "dump_flow_yaml",
    "flow_to_dict",
    "load_flow_file",
    "parse_flow_text",
    "validate_flow",
]

TASK_TYPES: tuple[str, ...] = (
    "ask_question",
    "answer_question",
    "review_answer",
    "question",
    "summarize",
    "evaluate",
    "suggest",
    "challenge",
    "support",
    "conclude",
    "comment",
)
FlowType = Literal["teaching", "review", "debate", "discussion", "interview", "other"]
FLOW_TYPES: tuple[str, ...] = get_args(FlowType)
CONTEXT_KEYWORDS: tuple[str, ...] = (
    "none",
    "all",
    "last_message",
    "last_round",
    "last_n_messages",
    "__TOPIC__",
)
# Short names accepted on input; export always writes the canonical (MRC column) name.
STEP_ALIASES: dict[str, str] = {
    "speaker": "speaker_role_ref",
    "target": "target_role_ref",
    "task": "task_type",
}
CONTEXT_PARAM_KEYS: tuple[str, ...] = ("n",)  # context_param.n: messages for last_n_messages
ROLE_REF_MAX = 50  # flow_steps.speaker_role_ref / target_role_ref are String(50)
ROLE_NAME_MAX = 100  # roles.name is String(100)

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


# --- small message helpers ---------------------------------------------------------


def _short(text: str, limit: int = 40) -> str:
    # repr() escapes newlines, so a message quoting user text stays on one line.
    return repr(text[:limit]) + "…" if len(text) > limit else repr(text)


def _show(value: Any) -> str:
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
        return _short(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a value of type {type(value).__name__}"


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _suggest(word: Any, candidates: Collection[str]) -> str:
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _fail(message: str) -> PydanticCustomError:
    # A custom error type carries our own wording through pydantic untouched.
    return PydanticCustomError("flowcli", "{message}", {"message": message})


def _sandbox_problem(source: str, kind: Literal["expression", "template"]) -> str | None:
    # Imported here: the template language loads Jinja, which a flow without templates
    # should not pay for (and the expression language is needed only by flows that use it).
    check: Callable[[str], str | None]
    if kind == "expression":
        from flowcli.sandbox.expressions import validate_expression as check
    else:
        from flowcli.sandbox.templates import validate_template as check
    try:
        return check(source)
    except FlowcliError as exc:  # a refusal by the sandbox is a finding, not a crash
        return exc.message


def _checked(value: str | None, kind: Literal["expression", "template"]) -> str | None:
    if value is None:
        return None
    problem = _sandbox_problem(value, kind)
    if problem:
        problem = _one_line(problem)
        # The sandbox's messages usually quote the source already ('expression "x": …').
        if not problem.startswith(kind):
            problem = f"invalid {kind} {_show(value)}: {problem}"
        raise _fail(problem)
    return value


def _canonical_step(step: dict[Any, Any]) -> tuple[dict[Any, Any], list[str]]:
    """The step with aliases renamed; conflicts (alias and canonical both given) listed."""
    out = dict(step)
    conflicts = []
    for alias, canonical in STEP_ALIASES.items():
        if alias in out:
            value = out.pop(alias)
            if canonical in out:
                conflicts.append(f"{alias!r} is an alias of {canonical!r}; give only one of them")
            else:
                out[canonical] = value
    return out, conflicts


def _normalize(data: dict[Any, Any]) -> tuple[dict[Any, Any], list[Problem], set[int]]:
    """Aliases resolved and missing orders set to the position (1-based).

    Returns the new mapping, the alias conflicts and the indexes whose order was defaulted.
    """
    result = dict(data)
    problems: list[Problem] = []
    defaulted: set[int] = set()
    steps = result.get("steps")
    if isinstance(steps, list):
        new_steps: list[Any] = []
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                step, conflicts = _canonical_step(step)
                problems.extend((("steps", index), message) for message in conflicts)
                if step.get("order") is None:
                    step["order"] = index + 1
                    defaulted.add(index)
            new_steps.append(step)
        result["steps"] = new_steps
    return result, problems, defaulted


# --- the models --------------------------------------------------------------------

# strict: YAML gives real ints and bools, so "3" for max_loops or 1.5 for order is an
# error in a file rather than something silently coerced (MRC crashed on such values).
_STRICT = ConfigDict(extra="forbid", strict=True)


class RoleSpec(BaseModel):
    """A role the flow creates or updates (matched by name)."""

    model_config = _STRICT

    prompt: str = Field(min_length=1)


class ExitCondition(BaseModel):
    """When a loop step's exit condition holds, its loop ends early (not the session)."""

    model_config = _STRICT

    type: Literal["expression", "llm_accept_flag"]
    expr: str | None = Field(default=None, min_length=1)

    @field_validator("expr")
    @classmethod
    def _expr_parses(cls, value: str | None) -> str | None:
        return _checked(value, "expression")

    @model_validator(mode="after")
    def _expr_matches_type(self) -> ExitCondition:
        if self.type == "expression" and self.expr is None:
            raise _fail("type 'expression' needs an expr, e.g. {type: expression, expr: ...}")
        if self.type == "llm_accept_flag" and self.expr is not None:
            raise _fail("type 'llm_accept_flag' takes no expr (it reads the reply's accept flag)")
        return self


class LogicConfig(BaseModel):
    """A step's condition and loop: jump back to ``next_step_order`` up to ``max_loops`` times."""

    model_config = _STRICT

    condition: str | None = Field(default=None, min_length=1)
    next_step_order: int | None = Field(default=None, ge=1)
    max_loops: int | None = Field(default=None, ge=0)
    exit_condition: ExitCondition | None = None

    @field_validator("condition")
    @classmethod
    def _condition_parses(cls, value: str | None) -> str | None:
        return _checked(value, "expression")

    @model_validator(mode="after")
    def _loop_is_bounded(self) -> LogicConfig:
        if self.next_step_order is not None and self.max_loops is None:
            raise _fail("next_step_order without max_loops would loop forever; add max_loops")
        if self.max_loops is not None and self.next_step_order is None:
            raise _fail("max_loops without next_step_order has no loop to bound")
        if self.exit_condition is not None and self.next_step_order is None:
            raise _fail("exit_condition without next_step_order has no loop to exit")
        return self


class StepSpec(BaseModel):
    """One step: ``speaker_role_ref`` speaks to ``target_role_ref`` doing ``task_type``."""

    model_config = _STRICT

    order: int = Field(ge=1)
    speaker_role_ref: str = Field(min_length=1, max_length=ROLE_REF_MAX)
    target_role_ref: str | None = Field(default=None, min_length=1, max_length=ROLE_REF_MAX)
    task_type: str
    context_scope: str | list[str] = "all"
    context_param: dict[str, Any] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=500)
    logic_config: LogicConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolve_aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out, conflicts = _canonical_step(data)
        if conflicts:
            raise _fail(conflicts[0])
        return out

    @field_validator("task_type")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASK_TYPES:
            raise _fail(
                f"unknown task_type {_show(value)}{_suggest(value, TASK_TYPES)}"
                f" (allowed: {', '.join(TASK_TYPES)})"
            )
        return value

    @field_validator("context_scope", mode="before")
    @classmethod
    def _scope_shape(cls, value: Any) -> Any:
        # Checked here so a wrong shape is one message, not one per union member.
        keywords = ", ".join(CONTEXT_KEYWORDS)
        if isinstance(value, str):
            if not value:
                raise _fail(f"must not be empty; use one of {keywords} or a role name")
        elif isinstance(value, list):
            if not value:
                raise _fail("an empty list selects no messages; use 'none' for no history")
            for index, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    raise _fail(f"item {index} must be a role name, got {_show(item)}")
        else:
            raise _fail(
                f"expected one of {keywords}, a role name or a list of role names, "
                f"got {_show(value)}"
            )
        return value

    @field_validator("context_param", mode="before")
    @classmethod
    def _param_null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("context_param")
    @classmethod
    def _param_n(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Only known keys: anything else would be stored unread, and is where a typo or a
        # YAML alias bomb hides.
        for key in value:
            if key not in CONTEXT_PARAM_KEYS:
                hint = _suggest(key, CONTEXT_PARAM_KEYS)
                allowed = ", ".join(CONTEXT_PARAM_KEYS)
                raise _fail(f"unknown key {_show(key)}{hint} (allowed: {allowed})")
        if "n" in value:
            n = value["n"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise _fail(f"n must be an integer >= 1 (messages to show), got {_show(n)}")
        return value

    @field_validator("logic_config", mode="before")
    @classmethod
    def _empty_logic_is_none(cls, value: Any) -> Any:
        # MRC stores "no logic" as {}; treat it as absent so export and import agree. The
        # same goes for known keys that are all null ({condition: null}); unknown keys
        # still reach validation and are reported.
        if isinstance(value, dict) and all(
            key in LogicConfig.model_fields and item is None for key, item in value.items()
        ):
            return None
        return value


class TerminationConfig(BaseModel):
    """When a session stops: after max_rounds rounds, max_steps steps, or end_condition."""

    model_config = _STRICT

    max_rounds: int | None = Field(default=None, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    end_condition: str | None = Field(default=None, min_length=1)

    @field_validator("end_condition")
    @classmethod
    def _end_parses(cls, value: str | None) -> str | None:
        return _checked(value, "expression")


class ResponderSpec(BaseModel):
    """Who writes the messages by default: a Jinja template, or an OpenAI-compatible API."""

    model_config = _STRICT

    type: Literal["template", "openai"]
    template: str | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)
    base_url: str | None = Field(default=None, min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("template")
    @classmethod
    def _template_parses(cls, value: str | None) -> str | None:
        return _checked(value, "template")


class FlowDocument(BaseModel):
    """A whole flow file. Steps are kept sorted by order.

    Field checks run on construction; the checks across steps and roles (orders, loop
    targets, role references) run in ``validate_flow``, which is the way to load a flow.
    """

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)
    topic: str | None = Field(default=None, max_length=2000)
    type: FlowType = "other"
    description: str | None = None
    version: str | None = Field(default=None, min_length=1, max_length=20)
    is_active: bool = True
    roles: dict[str, RoleSpec] = Field(default_factory=dict)
    termination_config: TerminationConfig | None = None
    responder: ResponderSpec | None = None
    steps: list[StepSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _normalize_steps(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        result, problems, _ = _normalize(data)
        if problems:
            (_, index), message = problems[0]
            raise _fail(f"steps[{index}]: {message}")
        return result

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise _fail("must not be blank")
        return value

    @field_validator("roles", mode="before")
    @classmethod
    def _roles_null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: dict[str, RoleSpec]) -> dict[str, RoleSpec]:
        for name in value:
            if not name.strip():
                raise _fail("a role name must not be empty")
            if len(name) > ROLE_NAME_MAX:
                raise _fail(
                    f"role name {_show(name)} is too long: {len(name)} characters, "
                    f"at most {ROLE_NAME_MAX}"
                )
        return value

    @field_validator("termination_config", mode="before")
    @classmethod
    def _empty_termination_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, dict) and not value else value

    @model_validator(mode="after")
    def _sort_steps(self) -> FlowDocument:
        self.steps.sort(key=lambda step: step.order)
        return self


# --- pydantic errors into our messages ---------------------------------------------

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
_MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): FlowDocument,
    ("roles", "*"): RoleSpec,
    ("steps", "#"): StepSpec,
    ("steps", "#", "logic_config"): LogicConfig,
    ("steps", "#", "logic_config", "exit_condition"): ExitCondition,
    ("termination_config",): TerminationConfig,
    ("responder",): ResponderSpec,
}


def _shape(loc: Loc) -> tuple[str, ...]:
    if len(loc) == 2 and loc[0] == "roles":
        return ("roles", "*")
    return tuple("#" if isinstance(part, int) else str(part) for part in loc)


def _unknown_key(key: Any, parent: Loc) -> str:
    model = _MODEL_AT.get(_shape(parent))
    allowed = list(model.model_fields) if model is not None else []
    if model is StepSpec:
        allowed += list(STEP_ALIASES)
    hint = _suggest(key, allowed)
    if not hint and allowed:
        hint = f" (allowed: {', '.join(allowed)})"
    if not isinstance(key, str):
        return f"unknown key {_show(key)}: keys must be names (strings){hint}"
    return f"unknown key {_show(key)}{hint}"


def _from_pydantic(error: Any) -> Problem:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "flowcli":
        return loc, str(ctx["message"])
    if kind in ("extra_forbidden", "invalid_key"):
        return loc[:-1], _unknown_key(loc[-1], loc[:-1])
    if loc and loc[-1] == "[key]":
        what = "a role name" if loc[:-2] == ("roles",) else "a key"
        return loc[:-2], f"{what} must be a string, got {_show(loc[-2])} (quote it)"
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}"
    if kind in _TYPE_WORDS:
        expected = _TYPE_WORDS[kind]
        if kind in ("dict_type", "model_type", "model_attributes_type", "list_type"):
            expected = _CONTAINER_WORDS.get(_shape(loc), expected)
        message = f"expected {expected}, got {_show(value)}"
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
        return loc, f"must be {sign} {ctx.get(key)}, got {_show(value)}"
    if kind == "finite_number":
        return loc, f"must be a finite number, got {_show(value)}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return loc, (
            f"expected one of {', '.join(options)}, got {_show(value)}{_suggest(value, options)}"
        )
    return loc, str(error.get("msg", "invalid value"))


# --- checks across the document ----------------------------------------------------


def _count(value: Any, minimum: int) -> int | None:
    """``value`` if it is a real integer >= minimum (others were reported by the model)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return None
    return value


def _check_document(
    data: dict[Any, Any], known_roles: Collection[str], defaulted: set[int]
) -> list[Problem]:
    """Orders, loop targets and role references: the checks no single field can make.

    Runs on the normalised raw data, so it still reports when other fields are invalid.
    """
    problems: list[Problem] = []
    raw_steps = data.get("steps")
    steps = [
        (index, step)
        for index, step in enumerate(raw_steps if isinstance(raw_steps, list) else [])
        if isinstance(step, dict)
    ]
    total = len(raw_steps) if isinstance(raw_steps, list) else 0

    # Orders: unique and exactly 1..n once defaults are applied.
    orders: dict[int, int] = {}
    holder: dict[int, int] = {}
    for index, step in steps:
        order = _count(step.get("order"), 1)
        if order is None:
            continue
        orders[index] = order
        if order in holder:
            other = holder[order]
            why = " (it has no order, so its position counts)" if other in defaulted else ""
            problems.append(
                (
                    ("steps", index, "order"),
                    f"duplicate order {order}: steps[{other}] has it too{why}",
                )
            )
        else:
            holder[order] = index
        if order > total:
            problems.append(
                (
                    ("steps", index, "order"),
                    f"{order} is out of range: orders run 1..{total} without gaps, one per step",
                )
            )

    # Loops: the target must exist and lie at or before the loop step; loops must nest.
    valid = set(orders.values())
    span = (
        f"1..{total}"
        if valid == set(range(1, total + 1))
        else ", ".join(str(o) for o in sorted(valid)) or "none"
    )
    loops: list[tuple[int, int, int]] = []  # (first order, loop step order, index)
    for index, step in steps:
        logic = step.get("logic_config")
        if not isinstance(logic, dict):
            continue
        target = _count(logic.get("next_step_order"), 1)
        if target is None:
            continue
        where: Loc = ("steps", index, "logic_config", "next_step_order")
        own = orders.get(index)
        if target not in valid:
            problems.append((where, f"{target} is not a step order ({span})"))
        elif own is not None and target > own:
            problems.append(
                (
                    where,
                    f"{target} points forward (this step's order is {own}); "
                    "a loop jumps back to this step or an earlier one",
                )
            )
        elif own is not None:
            loops.append((target, own, index))
    loops.sort()
    for first, (start_a, end_a, index_a) in enumerate(loops):
        for start_b, end_b, index_b in loops[first + 1 :]:
            if start_a < start_b <= end_a < end_b:
                problems.append(
                    (
                        ("steps", index_b, "logic_config", "next_step_order"),
                        f"this loop (orders {start_b}..{end_b}) crosses the loop of "
                        f"steps[{index_a}] (orders {start_a}..{end_a}); loops must nest "
                        "or be separate",
                    )
                )

    # Role references: speakers and targets need a role; scopes may name any of them.
    roles = data.get("roles")
    defined = (
        {name for name in roles if isinstance(name, str)} if isinstance(roles, dict) else set()
    )
    defined |= set(known_roles)
    referable = set(defined)
    for _, step in steps:
        for key in ("speaker_role_ref", "target_role_ref"):
            ref = step.get(key)
            if isinstance(ref, str) and ref:
                referable.add(ref)
    for index, step in steps:
        for key in ("speaker_role_ref", "target_role_ref"):
            ref = step.get(key)
            if isinstance(ref, str) and ref and len(ref) <= ROLE_REF_MAX and ref not in defined:
                problems.append(
                    (
                        ("steps", index, key),
                        f"unknown role {_show(ref)}: it is neither defined under roles "
                        f"nor an existing role{_suggest(ref, defined)}",
                    )
                )
        scope = step.get("context_scope", "all")
        if isinstance(scope, str) and scope:
            if scope not in CONTEXT_KEYWORDS and scope not in referable:
                problems.append(
                    (
                        ("steps", index, "context_scope"),
                        f"{_show(scope)} is neither a context scope "
                        f"({', '.join(CONTEXT_KEYWORDS)}) nor a role of this flow"
                        f"{_suggest(scope, (*CONTEXT_KEYWORDS, *referable))}",
                    )
                )
        elif isinstance(scope, list):
            for item_index, item in enumerate(scope):
                if not isinstance(item, str) or not item:
                    continue
                where = ("steps", index, "context_scope", item_index)
                # A list holds role names; a keyword there is a mistake unless a role
                # really has that name.
                if item in CONTEXT_KEYWORDS and item not in referable:
                    problems.append(
                        (
                            where,
                            f"{item!r} is a context keyword; a list holds role names only "
                            f"(use {item!r} on its own)",
                        )
                    )
                elif item not in referable:
                    problems.append(
                        (
                            where,
                            f"unknown role {_show(item)}: not a role of this flow"
                            f"{_suggest(item, referable)}",
                        )
                    )
    return problems


# --- the public functions ----------------------------------------------------------


def _format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{_show(part)}]"
    return text


def _sort_key(problem: Problem) -> tuple[int, int, int]:
    # Top-level findings first, then step by step in file order, then whole-list ones;
    # within a place an unknown key comes first, since a typo explains a missing key.
    loc, message = problem
    typo_first = 0 if message.startswith("unknown key") else 1
    if loc and loc[0] == "steps":
        if len(loc) > 1 and isinstance(loc[1], int):
            return (1, loc[1], typo_first)
        return (2, 0, typo_first)
    return (0, 0, typo_first)


def _render(source: str, loc: Loc, message: str) -> str:
    where = _format_loc(loc)
    return _one_line(f"{source}: {where}: {message}" if where else f"{source}: {message}")


def validate_flow(
    data: Any, source: str = "flow", known_roles: Collection[str] = ()
) -> FlowDocument:
    """Validate a parsed flow; raise ``FlowValidationError`` listing every problem found.

    ``known_roles`` are role names that already exist (in the database): steps may refer
    to them without defining them under ``roles``.
    """
    if not isinstance(data, dict):
        got = "an empty document" if data is None else type(data).__name__
        raise FlowValidationError([f"{source}: the flow must be a mapping, got {got}"], source)
    normalized, found, defaulted = _normalize(data)
    document: FlowDocument | None = None
    try:
        document = FlowDocument.model_validate(normalized)
    except ValidationError as exc:
        found.extend(_from_pydantic(error) for error in exc.errors(include_url=False))
    found.extend(_check_document(normalized, known_roles, defaulted))
    if found:
        found.sort(key=_sort_key)
        messages = list(dict.fromkeys(_render(source, loc, msg) for loc, msg in found))
        raise FlowValidationError(messages, source)
    assert document is not None  # model_validate either returned or added problems
    return document


MAX_FLOW_FILE_BYTES = 4 * 1024 * 1024


def load_flow_file(path: str | Path, known_roles: Collection[str] = ()) -> FlowDocument:
    """Read, parse and validate a flow file (.yaml, .yml and .json are read alike)."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            # A flow is a few kilobytes; a cap keeps a huge or endless file (a FIFO,
            # /dev/zero) from exhausting memory.
            raw = fh.read(MAX_FLOW_FILE_BYTES + 1)
        if len(raw) > MAX_FLOW_FILE_BYTES:
            raise FlowValidationError(
                [
                    f"{source}: larger than {MAX_FLOW_FILE_BYTES // (1024 * 1024)} MiB; "
                    "a flow file is expected to be small"
                ],
                source,
            )
    except FileNotFoundError:
        raise FlowValidationError([f"{source}: no such file"], source) from None
    except IsADirectoryError:
        raise FlowValidationError([f"{source}: is a directory, not a flow file"], source) from None
    except PermissionError:
        raise FlowValidationError([f"{source}: permission denied"], source) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise FlowValidationError([f"{source}: cannot read the file: {reason}"], source) from None
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        problem = f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise FlowValidationError([problem], source) from None
    return validate_flow(parse_flow_text(text, source), source, known_roles)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        out: dict[str, Any] = {}
        for name in type(value).model_fields:
            item = _plain(getattr(value, name))
            # Absent and empty fields are noise in an exported file.
            if item is None or (isinstance(item, dict | list) and not item):
                continue
            out[name] = item
        return out
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def flow_to_dict(doc: FlowDocument) -> dict[str, Any]:
    """The document as plain data with canonical keys, steps in order, no empty fields."""
    data = _plain(doc)
    data["steps"] = [_plain(step) for step in sorted(doc.steps, key=lambda step: step.order)]
    return data
