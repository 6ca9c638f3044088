"""The built-in template's Jinja-free render is byte for byte the sandboxed Jinja render,
on any values (hostile text included); anything it does not handle goes to Jinja."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcli.engine.builtin_template import (
    BUILTIN_TEMPLATE_NAMES,
    DEFAULT_TEMPLATE,
    FAST_PATH_MAX_LENGTH,
    render_builtin,
)
from flowcli.engine.responders import ResponderRequest, TemplateResponder
from flowcli.errors import ExpressionError, ResponderError
from flowcli.sandbox.limits import MAX_OUTPUT_LENGTH
from flowcli.sandbox.names import MessageView
from flowcli.sandbox.templates import compile_template

NAMES = ("speaker", "target", "task_type", "topic", "round", "step", "loop_iteration")
HOSTILE = [
    "",
    " ",
    "{{ topic }}",
    "{% if 1 %}x{% endif %}",
    "{{ ''.__class__ }}",
    '"quoted" \\ back\\slash',
    "line\nbreak\r\n\ttab",
    "\x00nul\x1b[31mred",
    "→ ← 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🦜",
    "\ud800 lone surrogate",
    "None",
    "0",
    "x" * 5000,
]
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=200)
PLAIN = st.one_of(
    st.sampled_from(HOSTILE),
    ANY_TEXT,
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=True, allow_infinity=True),
)


def jinja_render(names: dict[str, Any]) -> str:
    return compile_template(DEFAULT_TEMPLATE).render(names)


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({name: PLAIN for name in NAMES}))
def test_same_text_as_jinja_on_any_plain_values(names: dict[str, Any]) -> None:
    fast = render_builtin(names)
    assert fast is not None
    assert fast.encode("utf-8", "surrogatepass") == jinja_render(names).encode(
        "utf-8", "surrogatepass"
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_in_every_place(text: str) -> None:
    for name in NAMES:
        names: dict[str, Any] = {n: f"v-{n}" for n in NAMES}
        names[name] = text
        assert render_builtin(names) == jinja_render(names)


class Text(str):
    """A str subclass: not plain, so Jinja decides."""


@pytest.mark.parametrize(
    "odd",
    [
        [1, 2],
        {"a": 1},
        (),
        Text("sub"),
        MessageView(id=1, speaker="A", target=None, content="c", section=None, round=1),
    ],
)
def test_other_values_go_to_jinja_and_give_its_text(odd: Any) -> None:
    names: dict[str, Any] = {n: f"v-{n}" for n in NAMES}
    names["topic"] = odd
    assert render_builtin(names) is None
    responder = TemplateResponder()
    reply = responder.respond(_request(names))
    assert reply.content == jinja_render(names)


def test_a_missing_name_is_jinjas_error() -> None:
    names = {n: "x" for n in NAMES if n != "step"}
    assert render_builtin(names) is None
    with pytest.raises(ExpressionError) as jinja_error:
        jinja_render(names)
    with pytest.raises(ResponderError) as ours:
        TemplateResponder().respond(_request(names))
    assert str(jinja_error.value) in str(ours.value)


def test_a_long_result_is_left_to_jinja() -> None:
    assert FAST_PATH_MAX_LENGTH < MAX_OUTPUT_LENGTH
    names: dict[str, Any] = {n: "x" for n in NAMES}
    names["topic"] = "t" * FAST_PATH_MAX_LENGTH
    assert render_builtin(names) is None
    assert TemplateResponder().respond(_request(names)).content == jinja_render(names)
    names["topic"] = "t" * MAX_OUTPUT_LENGTH  # over the sandbox's limit: its error
    with pytest.raises(ResponderError, match="output is longer"):
        TemplateResponder().respond(_request(names))


def test_a_user_template_keeps_the_sandbox() -> None:
    responder = TemplateResponder(template="{{ topic | upper }}!")
    names: dict[str, Any] = {n: "x" for n in NAMES}
    assert responder.respond(_request(names)).content == "X!"
    with pytest.raises(ExpressionError, match="not allowed"):
        TemplateResponder(template="{{ topic.__class__ }}")


def _request(names: dict[str, Any]) -> ResponderRequest:
    return ResponderRequest(
        session_id=1,
        topic=str(names.get("topic")),
        speaker=str(names.get("speaker")),
        target=None,
        task_type="t",
        speaker_prompt=None,
        context=[],
        names=names,
    )


def test_the_names_it_reads_are_the_sandboxs_analysis() -> None:
    assert compile_template(DEFAULT_TEMPLATE).names_used == BUILTIN_TEMPLATE_NAMES
    assert TemplateResponder().names_used == BUILTIN_TEMPLATE_NAMES
