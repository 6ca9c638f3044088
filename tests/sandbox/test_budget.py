"""The sandbox's work budget and CPU deadline (issue 14).

Allocation limits alone let a few hundred characters build a value of 2**40 shared items
(``(t, t)`` nested forty times costs forty tuples), which hashing, comparing, sorting or
printing then walks in full. These tests hand the sandbox such values and check that every
walk is charged *before* it runs, that repeated walks add up, and that an evaluation is cut
off by its CPU deadline while it runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowcli.errors import ExpressionError
from flowcli.sandbox import limits
from flowcli.sandbox.expressions import compile_expression, validate_expression
from flowcli.sandbox.templates import SandboxEnvironment, compile_template, validate_template
from tests.helpers import cpu_seconds

LOOSE_BOUND = 30.0  # CPU seconds; the walks below would take hours


def shared(levels: int, leaf: Any = 0) -> tuple[Any, ...]:
    """A tuple of 2**levels leaves built from ``levels`` tuples: (t, t), ((t, t), (t, t)), …"""
    value: tuple[Any, ...] = (leaf, leaf)
    for _ in range(levels - 1):
        value = (value, value)
    return value


def shared_list(levels: int, leaf: Any = 0) -> list[Any]:
    value: list[Any] = [leaf, leaf]
    for _ in range(levels - 1):
        value = [value, value]
    return value


def names(**variables: Any) -> dict[str, Any]:
    return {"round": 1, "step": 1, "vars": variables, "topic": "t", "messages": []}


def refused(run: Any) -> str:
    started = cpu_seconds()
    with pytest.raises(ExpressionError) as caught:
        run()
    assert cpu_seconds() - started < LOOSE_BOUND
    message = caught.value.message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("vars.get(vars.t)", "too large to look up"),
        ("vars[vars.t]", "too large to look up"),
        ("vars.t in vars", "too large to look up"),
        ("vars.t == vars.u", "too large to compare"),
        ("vars.t < vars.u", "too large to compare"),
        ("[vars.t] == [vars.u]", "too large to compare"),
        ("vars.t in [vars.u]", "too large to compare"),
        ("[vars.u].count(vars.t)", "too large to compare"),
        ("sorted([vars.t, vars.u])", "too large to compare"),
        ("max([vars.t, vars.u])", "too large to compare"),
        ("str(vars.t)", "too large to turn into text"),
        ("f'{vars.t}'", "too large to turn into text"),
    ],
)
def test_walking_shared_structure_is_refused_before_it_runs(source: str, expected: str) -> None:
    values = names(t=shared(40), u=shared(40, 1))
    message = refused(lambda: compile_expression(source).evaluate(values))
    assert expected in message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% for i in range(3) %}{{ loop.changed(vars.t) }}{% endfor %}", "too large to compare"),
        ("{{ vars.t == vars.u }}", "too large to compare"),
        ("{{ vars.t in [vars.u] }}", "too large to compare"),
        ("{{ [vars.t, vars.u]|sort }}", "too large to compare"),
        ("{{ [vars.t, vars.u]|unique|list }}", "too large to compare"),
        ("{{ vars.t }}", "too large to turn into text"),
        ("{{ vars.t|string }}", "too large to turn into text"),
    ],
)
def test_templates_walking_shared_structure_are_refused(source: str, expected: str) -> None:
    values = names(t=shared_list(40), u=shared_list(40, 1))
    message = refused(lambda: compile_template(source).render(values))
    assert expected in message


def test_repeated_walks_add_up_to_the_work_budget() -> None:
    # Each lookup walks 2**17 - 1 items (2**16 leaves and the tuples), under the per-value
    # limit; ten thousand of them would walk 1.3 billion. The walks add up and stop early.
    values = names(t=shared(16))
    source = "[vars.get(vars.t) for c in 'x' * 10000]"
    assert "walks too much data" in refused(lambda: compile_expression(source).evaluate(values))
    template = "{% for i in range(10000) %}{{ vars.t == vars.u }}{% endfor %}"
    values = names(t=shared_list(16), u=shared_list(16, 1))
    assert "walks too much data" in refused(lambda: compile_template(template).render(values))


def test_a_value_is_measured_once_per_evaluation() -> None:
    # The measuring itself is memoised: a 2**40 value costs forty steps, not 2**40.
    values = names(t=shared(40))
    for _ in range(3):
        refused(lambda: compile_expression("vars.get(vars.t)").evaluate(values))


def test_ordinary_work_on_big_flat_values_still_runs() -> None:
    values = names(words=[f"w{i}" for i in range(50_000)], n=list(range(50_000)))
    expression = "len(sorted(vars.n)) == 50000 and 'w49999' in vars.words and max(vars.n) > 1"
    assert compile_expression(expression).evaluate(values) is True
    template = "{{ vars.n|sort|last }} {{ vars.words|unique|list|length }}"
    assert compile_template(template).render(values) == "49999 50000"


@pytest.mark.parametrize(
    "source",
    [
        "[(b, b) for b in [(a, a) for a in [(z, z) for z in [1]]]]",
        "[[x for x in [y for y in [1]]] for z in [1]]",
        "any(any(any(x for x in [1]) for y in [1]) for z in [1])",
    ],
)
def test_comprehensions_nested_more_than_two_deep_are_refused(source: str) -> None:
    problem = validate_expression(source)
    assert problem is not None and "nest at most 2 deep" in problem


def test_comprehensions_nested_two_deep_are_fine() -> None:
    source = "[m for m in [n for n in messages if n.round > 0] if m.speaker == 'a']"
    assert validate_expression(source) is None
    assert compile_expression(source).evaluate(names()) == []


def test_templates_that_build_exponentially_large_values_are_refused() -> None:
    source = "{% set a = [1] %}" + "{% set a = [a, a] %}" * 20 + "{{ a|length }}"
    problem = validate_template(source)
    assert problem is not None and "exponentially" in problem
    # inside an {% if %} too (it does not scope its assignments), and in {% with %}
    inside_if = "{% if round %}" + source + "{% endif %}"
    assert validate_template(inside_if) is not None
    with_chain = "{% with a = [1] %}" + "{% set a = [a, a, a, a] %}" * 10 + "{% endwith %}"
    assert validate_template(with_chain) is not None


def test_templates_that_repeat_names_a_little_are_fine() -> None:
    source = (
        "{% set pair = [speaker, target] %}{% set pairs = [pair, pair, pair] %}"
        "{% for p in pairs %}{{ p|join('-') }};{% endfor %}"
    )
    assert validate_template(source) is None
    rendered = compile_template(source).render({"speaker": "a", "target": "b"})
    assert rendered == "a-b;a-b;a-b;"


@pytest.fixture
def tiny_deadline(monkeypatch: pytest.MonkeyPatch) -> float:
    """A 0.2 s CPU deadline, with the count limits lifted so only the clock can stop work."""
    monkeypatch.setattr(limits, "MAX_CPU_SECONDS", 0.2)
    monkeypatch.setattr(limits, "MAX_ITERATIONS", 10**12)
    monkeypatch.setattr(limits, "MAX_WORK", 10**15)
    monkeypatch.setattr(limits, "MAX_WALK", 10**15)
    return 0.2


def test_the_cpu_deadline_stops_an_expression_while_it_runs(tiny_deadline: float) -> None:
    # 10**12 loop iterations: without a deadline checked as it runs, days of work.
    source = "len([1 for a in 'x' * 10000 for b in 'x' * 10000 for c in 'x' * 10000])"
    message = refused(lambda: compile_expression(source).evaluate(names()))
    assert "takes too long" in message and "CPU time" in message


def test_the_cpu_deadline_stops_a_template_while_it_runs(tiny_deadline: float) -> None:
    source = (
        "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    )
    message = refused(lambda: compile_template(source).render(names()))
    assert "takes too long" in message


def test_the_deadline_is_per_evaluation(tiny_deadline: float) -> None:
    # Many cheap evaluations in a row are each well inside their own deadline.
    expression = compile_expression("len([1 for c in 'x' * 100]) == 100")
    for _ in range(2000):
        assert expression.evaluate(names()) is True


def test_the_sandbox_uses_only_public_jinja_hooks() -> None:
    """No override of a private Jinja method (the old one overrode Environment._parse)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    private = [
        name
        for name in vars(SandboxEnvironment)
        if name.startswith("_")
        and not name.startswith("__")
        and hasattr(ImmutableSandboxedEnvironment, name)
    ]
    assert private == []
