"""Property tests: whatever text or data comes in, flow parsing and validation either
succeed or raise FlowValidationError with one-line messages; valid flows survive export."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcli.errors import FlowValidationError
from flowcli.flows.spec import (
    CONTEXT_KEYWORDS,
    FLOW_TYPES,
    STEP_ALIASES,
    TASK_TYPES,
    ExitCondition,
    FlowDocument,
    LogicConfig,
    ResponderSpec,
    StepSpec,
    TerminationConfig,
    dump_flow_yaml,
    flow_to_dict,
    parse_flow_text,
    validate_flow,
)

SOURCE = "prop.yaml"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REAL_KEYS = sorted(
    {
        *FlowDocument.model_fields,
        *StepSpec.model_fields,
        *STEP_ALIASES,
        *LogicConfig.model_fields,
        *ExitCondition.model_fields,
        *TerminationConfig.model_fields,
        *ResponderSpec.model_fields,
        "prompt",
        "n",
    }
)
ROLE_NAMES = ["A", "Teacher", "打工人（产品）"]  # "B" stands for a role known to the database
STEP_KEY_TO_ALIAS = {canonical: alias for alias, canonical in STEP_ALIASES.items()}
DOMAIN_WORDS = [
    *TASK_TYPES,
    *CONTEXT_KEYWORDS,
    *FLOW_TYPES,
    *ROLE_NAMES,
    "expression",
    "llm_accept_flag",
    "template",
    "openai",
    "round >= 1",
    "'agree' in last.content",
    "((",
    "{{ speaker }}",
    "{% if %}",
    "",
]

keys = st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=12), st.integers(-3, 3))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-2, 5),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(DOMAIN_WORDS),
)


def nested(max_leaves: int) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)
        ),
        max_leaves=max_leaves,
    )


documents = nested(20)


def assert_only_flow_errors(data: Any) -> FlowDocument | None:
    """Validate ``data``; a failure must be a FlowValidationError of one-line messages."""
    try:
        return validate_flow(data, SOURCE, known_roles=("B",))
    except FlowValidationError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert isinstance(problem, str)
            assert len(problem.splitlines()) == 1, problem
            assert problem.startswith(SOURCE), problem
        return None


def assert_round_trip(doc: FlowDocument) -> None:
    again = validate_flow(
        parse_flow_text(dump_flow_yaml(flow_to_dict(doc)), SOURCE), SOURCE, ("B",)
    )
    assert again == doc


@SETTINGS
@given(documents)
def test_random_documents_fail_only_with_flow_errors(data: Any) -> None:
    assert_only_flow_errors(data)


@SETTINGS
@given(st.dictionaries(keys, nested(8), max_size=6))
def test_random_mappings_fail_only_with_flow_errors(data: dict[Any, Any]) -> None:
    assert_only_flow_errors(data)


# Flow-shaped data: real keys with mostly plausible values, so validation goes deep
# (orders, loops, role references) and a fair share of documents is valid.
plain_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(DOMAIN_WORDS),
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` about nine times in ten, ``bad`` otherwise."""
    return st.integers(0, 9).flatmap(lambda pick: bad if pick == 0 else good)


role_refs = st.sampled_from([*ROLE_NAMES, "B"])
exit_conditions = mostly(
    st.one_of(
        st.just({"type": "llm_accept_flag"}),
        st.fixed_dictionaries(
            {"type": st.just("expression"), "expr": st.sampled_from(DOMAIN_WORDS)}
        ),
    ),
    st.dictionaries(st.sampled_from(["type", "expr", "typ"]), plain_scalars, max_size=2),
)
logic_configs = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "condition": st.sampled_from(["round >= 1", "step > 1", "((", ""]),
            "next_step_order": st.integers(0, 5),
            "max_loops": st.integers(-1, 3),
            "exit_condition": exit_conditions,
        },
    ),
    st.dictionaries(
        st.sampled_from([*LogicConfig.model_fields, "max_loop"]), plain_scalars, max_size=4
    ),
)
near_steps = st.fixed_dictionaries(
    {
        "speaker_role_ref": mostly(role_refs, plain_scalars),
        "task_type": mostly(st.sampled_from(TASK_TYPES), plain_scalars),
    },
    optional={
        "order": mostly(st.integers(1, 5), plain_scalars),
        "target_role_ref": mostly(role_refs, plain_scalars),
        "context_scope": mostly(
            st.one_of(
                st.sampled_from(CONTEXT_KEYWORDS),
                role_refs,
                st.lists(role_refs, min_size=1, max_size=3),
            ),
            st.one_of(plain_scalars, st.lists(plain_scalars, max_size=3)),
        ),
        "context_param": mostly(
            st.fixed_dictionaries({"n": st.integers(1, 9)}),
            st.dictionaries(st.sampled_from(["n", "x"]), plain_scalars, max_size=2),
        ),
        "description": st.text(max_size=30),
        "logic_config": logic_configs,
    },
).map(
    # Some steps use the aliases instead of the long names.
    lambda step: {STEP_KEY_TO_ALIAS.get(k, k) if len(step) % 2 else k: v for k, v in step.items()}
)
random_steps = st.dictionaries(
    st.sampled_from([*StepSpec.model_fields, *STEP_ALIASES, "speeker_role_ref"]),
    st.one_of(plain_scalars, role_refs, logic_configs),
    max_size=7,
)
roles = mostly(
    st.fixed_dictionaries({name: st.just({"prompt": "p"}) for name in ROLE_NAMES}),
    st.dictionaries(
        st.sampled_from(ROLE_NAMES),
        st.one_of(st.fixed_dictionaries({"prompt": st.text(max_size=20)}), plain_scalars),
        max_size=3,
    ),
)
flow_like = st.fixed_dictionaries(
    {
        "name": mostly(st.text(min_size=1, max_size=10), plain_scalars),
        "roles": roles,
        "steps": st.lists(mostly(near_steps, random_steps), max_size=5),
    },
    optional={
        "type": st.sampled_from([*FLOW_TYPES, "lecture"]),
        "version": st.one_of(st.text(max_size=25), st.integers()),
        "termination_config": st.dictionaries(
            st.sampled_from([*TerminationConfig.model_fields, "max_round"]),
            st.one_of(st.integers(-1, 3), st.sampled_from(DOMAIN_WORDS)),
        ),
        "responder": st.dictionaries(
            st.sampled_from([*ResponderSpec.model_fields]), plain_scalars, max_size=3
        ),
    },
)


@SETTINGS
@given(flow_like)
def test_flow_shaped_data_fails_cleanly_or_round_trips(data: dict[str, Any]) -> None:
    doc = assert_only_flow_errors(data)
    if doc is not None:
        assert [s.order for s in doc.steps] == list(range(1, len(doc.steps) + 1))
        assert_round_trip(doc)


YAML_PIECES = [
    "name: ",
    "steps:",
    "\n",
    "\n  ",
    "- ",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "&a ",
    "*a",
    "!!str ",
    "!!python/object ",
    "? ",
    "<<: ",
    "#",
    "\t",
    "---",
    "...",
    "|",
    ">",
    "12345678901234567890",
    "\x07",
    "\ufeff",
    "speaker_role_ref",
    "task_type",
    "ask_question",
    "logic_config",
    "max_loops",
]


@SETTINGS
@given(
    st.one_of(
        st.text(max_size=200), st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join)
    )
)
def test_random_text_fails_only_with_flow_errors(text: str) -> None:
    try:
        data = parse_flow_text(text, SOURCE)
    except FlowValidationError as exc:
        assert len(exc.problems) == 1
        assert len(exc.problems[0].splitlines()) == 1
        assert exc.problems[0].startswith(SOURCE)
        return
    assert isinstance(data, dict)
    assert_only_flow_errors(data)


free_text = st.text(max_size=60)


@st.composite
def valid_documents(draw: st.DrawFn) -> FlowDocument:
    names = draw(
        st.lists(
            st.text(min_size=1, max_size=12).filter(str.strip), min_size=1, max_size=3, unique=True
        )
    )
    count = draw(st.integers(1, 5))
    orders = draw(st.permutations(range(1, count + 1)))
    step_list = []
    for order in orders:
        step: dict[str, Any] = {
            "order": order,
            "speaker_role_ref": draw(st.sampled_from(names)),
            "task_type": draw(st.sampled_from(TASK_TYPES)),
            "context_scope": draw(
                st.one_of(
                    st.sampled_from(CONTEXT_KEYWORDS),
                    st.lists(st.sampled_from(names), min_size=1, max_size=2),
                )
            ),
        }
        if draw(st.booleans()):
            step["target_role_ref"] = draw(st.sampled_from(names))
        if draw(st.booleans()):
            step["description"] = draw(free_text)
        if draw(st.booleans()):
            step["context_param"] = {"n": draw(st.integers(1, 9))}
        if draw(st.booleans()):
            step["logic_config"] = {
                "next_step_order": draw(st.integers(1, order)),
                "max_loops": draw(st.integers(0, 3)),
            }
        step_list.append(step)
    # Loops must nest: keep only loops that do not cross an earlier kept one.
    kept: list[tuple[int, int]] = []
    for step in sorted(step_list, key=lambda s: s["order"]):
        logic = step.get("logic_config")
        if logic is None:
            continue
        start, end = logic["next_step_order"], step["order"]
        if any(a < start <= b < end or start < a <= end < b for a, b in kept):
            del step["logic_config"]
        else:
            kept.append((start, end))
    data = {
        "name": draw(st.text(min_size=1, max_size=40).filter(str.strip)),
        "topic": draw(free_text),
        "description": draw(st.text(max_size=200)),
        "version": draw(st.text(min_size=1, max_size=20)),
        "is_active": draw(st.booleans()),
        "type": draw(st.sampled_from(FLOW_TYPES)),
        "roles": {name: {"prompt": draw(st.text(min_size=1, max_size=80))} for name in names},
        "termination_config": {"max_rounds": draw(st.integers(1, 3))},
        "steps": step_list,
    }
    return validate_flow(data, SOURCE)


@SETTINGS
@given(valid_documents())
def test_valid_documents_round_trip_through_yaml(doc: FlowDocument) -> None:
    data = flow_to_dict(doc)
    assert [step["order"] for step in data["steps"]] == list(range(1, len(doc.steps) + 1))
    assert not any(value is None for value in data.values())
    assert_round_trip(doc)


def test_nan_and_infinity_never_reach_a_number_field() -> None:
    for value in (math.nan, math.inf):
        data = {
            "name": "x",
            "responder": {"type": "openai", "timeout": value},
            "steps": [{"speaker": "B", "task": "comment"}],
        }
        assert assert_only_flow_errors(data) is None
