"""The flow document: its pydantic model, whole-document validation, loading and export.

Every problem in a flow is reported at once, one line each, as
``{source}: {path}: {what was expected}`` (``flow.yaml: steps[2].logic_config.max_loops: …``).
The words of a flow are in flowcli.flows.vocabulary, the wording of its problems in
flowcli.flows.spec_words, and the checks across steps in flowcli.flows.spec_checks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Literal

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
from flowcli.flows.spec_checks import check_document
from flowcli.flows.spec_words import (
    did_you_mean,
    one_line,
    problem_from_pydantic,
    problem_order,
    render_problem,
    show_value,
)
from flowcli.flows.vocabulary import (
    CONTEXT_KEYWORDS,
    CONTEXT_PARAM_KEYS,
    FLOW_TYPES,
    ROLE_NAME_MAX,
    ROLE_REF_MAX,
    STEP_ALIASES,
    TASK_TYPES,
    FlowType,
    Problem,
)
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

# --- small helpers ---------------------------------------------------------------


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
        problem = one_line(problem)
        # The sandbox's messages usually quote the source already ('expression "x": …').
        if not problem.startswith(kind):
            problem = f"invalid {kind} {show_value(value)}: {problem}"
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
                f"unknown task_type {show_value(value)}{did_you_mean(value, TASK_TYPES)}"
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
                    raise _fail(f"item {index} must be a role name, got {show_value(item)}")
        else:
            raise _fail(
                f"expected one of {keywords}, a role name or a list of role names, "
                f"got {show_value(value)}"
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
                hint = did_you_mean(key, CONTEXT_PARAM_KEYS)
                allowed = ", ".join(CONTEXT_PARAM_KEYS)
                raise _fail(f"unknown key {show_value(key)}{hint} (allowed: {allowed})")
        if "n" in value:
            n = value["n"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise _fail(f"n must be an integer >= 1 (messages to show), got {show_value(n)}")
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
                    f"role name {show_value(name)} is too long: {len(name)} characters, "
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


# --- the public functions ----------------------------------------------------------


# The keys each place takes (for "did you mean"), from the models; a step also takes
# the aliases.
_ALLOWED_AT: dict[tuple[str, ...], list[str]] = {
    (): list(FlowDocument.model_fields),
    ("roles", "*"): list(RoleSpec.model_fields),
    ("steps", "#"): [*StepSpec.model_fields, *STEP_ALIASES],
    ("steps", "#", "logic_config"): list(LogicConfig.model_fields),
    ("steps", "#", "logic_config", "exit_condition"): list(ExitCondition.model_fields),
    ("termination_config",): list(TerminationConfig.model_fields),
    ("responder",): list(ResponderSpec.model_fields),
}


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
        found.extend(
            problem_from_pydantic(error, _ALLOWED_AT) for error in exc.errors(include_url=False)
        )
    found.extend(check_document(normalized, known_roles, defaulted))
    if found:
        found.sort(key=problem_order)
        messages = list(dict.fromkeys(render_problem(source, loc, msg) for loc, msg in found))
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
