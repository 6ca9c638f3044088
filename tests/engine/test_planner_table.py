"""The pure planner, table-driven: every transition, with no database.

Each row is a flow (its steps and termination config), what the conditions say at each
execution, and the walk the planner makes: the step orders executed (a skipped step is
``-N``), their rounds and loop iterations, and how the walk ends. The walk calls only
``max_steps_reached``, ``plan_step`` and ``advance``, as the runner does between its read
and its write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowcli.engine import planner
from flowcli.engine.planner import advance, max_steps_reached, plan_step
from flowcli.flows.snapshot import FlowSnapshot, parse_snapshot

EngineState = planner.EngineState


def _step(order: int, task: str = "comment", **logic: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": 100 + order,
        "order": order,
        "speaker_role_ref": "A",
        "task_type": task,
        "context_scope": "none",
        "logic_config": {k: v for k, v in logic.items() if k != "next_step_id"},
    }
    if "next_step_id" in logic:
        raw["next_step_id"] = logic["next_step_id"]
    return raw


def _snapshot(steps: list[dict[str, Any]], **termination: Any) -> FlowSnapshot:
    return parse_snapshot(
        json.dumps({"name": "t", "steps": steps, "termination_config": termination})
    )


# What the runner's evaluations say, as functions of (step order, execution number):
Verdict = Callable[[int, int], bool]


def never(_order: int, _n: int) -> bool:
    return False


def always(_order: int, _n: int) -> bool:
    return True


@dataclass
class Walk:
    orders: list[int] = field(default_factory=list)  # -N: step N skipped
    rounds: list[int] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    results: list[str | None] = field(default_factory=list)
    ending: str = ""


def walk(
    snapshot: FlowSnapshot,
    *,
    condition: Verdict = always,
    exit_met: Verdict = never,
    end_met: Verdict = never,
    rounds_end_on_summary: bool = False,
    limit: int = 200,
) -> Walk:
    out = Walk()
    state = EngineState()
    step, round_ = snapshot.first_step(), 1
    for n in range(1, limit + 1):
        stop = max_steps_reached(snapshot, n - 1)
        if stop is not None:
            out.ending = "max_steps"
            return out
        plan = plan_step(snapshot, step, round_, state)
        ran = condition(step.order, n)
        decision = advance(
            snapshot,
            plan,
            state,
            log_id=n,
            ran=ran,
            exit_condition_met=exit_met(step.order, n) if ran else None,
            end_condition_met=end_met(step.order, n) if ran else False,
            rounds_end_on_summary=rounds_end_on_summary,
        )
        out.orders.append(step.order if ran else -step.order)
        out.rounds.append(plan.round)
        out.iterations.append(plan.loop_iteration)
        out.results.append(decision.loop_result)
        if decision.finished:
            out.ending = "finished"
            assert decision.next_step is None and decision.state.loops == {}
            return out
        assert decision.next_step is not None
        step, round_, state = decision.next_step, decision.next_round, decision.state
    out.ending = "limit"
    return out


LINEAR = [_step(1), _step(2), _step(3)]
LOOP = [_step(1), _step(2, next_step_order=1, max_loops=2), _step(3)]
NESTED = [
    _step(1),
    _step(2),
    _step(3, next_step_order=2, max_loops=1),  # inner loop: 2..3
    _step(4, next_step_order=1, max_loops=1),  # outer loop: 1..4
    _step(5),
]


@dataclass
class Row:
    name: str
    snapshot: FlowSnapshot
    expected: dict[str, Any]
    condition: Verdict = always
    exit_met: Verdict = never
    end_met: Verdict = never
    rounds_end_on_summary: bool = False


ROWS = [
    Row("linear", _snapshot(LINEAR), {"orders": [1, 2, 3], "ending": "finished"}),
    Row(
        "rounds wrap to the first step",
        _snapshot([_step(1), _step(2)], max_rounds=3),
        {"orders": [1, 2, 1, 2, 1, 2], "rounds": [1, 1, 2, 2, 3, 3], "ending": "finished"},
    ),
    Row(
        "a loop runs max_loops jumps, then goes on",
        _snapshot(LOOP),
        {
            "orders": [1, 2, 1, 2, 1, 2, 3],
            "iterations": [0, 0, 1, 1, 2, 2, 0],
            "results": [None, "loop_continue", None, "loop_continue", None, "loop_break", None],
            "ending": "finished",
        },
    ),
    Row(
        "nested loops: the inner one starts again each time the outer one jumps",
        _snapshot(NESTED),
        {"orders": [1, 2, 3, 2, 3, 4, 1, 2, 3, 2, 3, 4, 5], "ending": "finished"},
    ),
    Row(
        "max_loops 0: the loop step never jumps",
        _snapshot([_step(1), _step(2, next_step_order=1, max_loops=0), _step(3)]),
        {"orders": [1, 2, 3], "results": [None, "loop_break", None]},
    ),
    Row(
        "a false condition skips its step (and makes no loop decision)",
        _snapshot(LOOP),
        {"orders": [1, -2, 3], "results": [None, None, None], "ending": "finished"},
        condition=lambda order, _n: order != 2,
    ),
    Row(
        "a condition false only on a loop's second pass",
        _snapshot(LOOP),
        {"orders": [1, 2, 1, -2, 3], "iterations": [0, 0, 1, 1, 0]},
        condition=lambda order, n: not (order == 2 and n == 4),
    ),
    Row(
        "an exit condition ends the loop, not the session",
        _snapshot([_step(1), _step(2, next_step_order=1, max_loops=5), _step(3)]),
        {
            "orders": [1, 2, 1, 2, 3],
            "results": [None, "loop_continue", None, "loop_break", None],
            "ending": "finished",
        },
        exit_met=lambda order, n: order == 2 and n >= 4,
    ),
    Row(
        "an end condition finishes the session mid-loop",
        _snapshot(LOOP, max_rounds=3),
        {"orders": [1, 2, 1], "ending": "finished"},
        end_met=lambda _order, n: n == 3,
    ),
    Row(
        "an end condition on the last step of a round ends all rounds",
        _snapshot([_step(1), _step(2)], max_rounds=3),
        {"orders": [1, 2], "rounds": [1, 1], "ending": "finished"},
        end_met=lambda order, _n: order == 2,
    ),
    Row(
        "max_steps stops a long loop",
        _snapshot([_step(1), _step(2, next_step_order=1, max_loops=50)], max_steps=5),
        {"orders": [1, 2, 1, 2, 1], "ending": "max_steps"},
    ),
    Row(
        "max_steps counts skipped steps too",
        _snapshot(LINEAR, max_steps=2),
        {"orders": [-1, 2], "ending": "max_steps"},
        condition=lambda order, _n: order != 1,
    ),
    Row(
        "next_step_id jumps over a step",
        _snapshot([_step(1, next_step_id=103), _step(2), _step(3)]),
        {"orders": [1, 3], "ending": "finished"},
    ),
    Row(
        "MRC's rounds: a summary ends the round, and the wrap adds no second one",
        _snapshot([_step(1), _step(2, "summarize")], max_rounds=2),
        {"orders": [1, 2, 1, 2], "rounds": [1, 1, 2, 2], "ending": "finished"},
        rounds_end_on_summary=True,
    ),
    Row(
        # As MRC counts: the summary's raise and the wrap's are separate, so two rounds
        # of steps use rounds 1 to 4 and the wrap check (round < max_rounds) ends it.
        "MRC's rounds: a summary mid-flow raises the round, and the wrap raises it again",
        _snapshot([_step(1, "summarize"), _step(2)], max_rounds=3),
        {"orders": [1, 2, 1, 2], "rounds": [1, 2, 3, 4], "ending": "finished"},
        rounds_end_on_summary=True,
    ),
    Row(
        "flowcli's rounds: a summary does not end the round",
        _snapshot([_step(1, "summarize"), _step(2)], max_rounds=2),
        {"orders": [1, 2, 1, 2], "rounds": [1, 1, 2, 2], "ending": "finished"},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_the_planner_walks_the_flow(row: Row) -> None:
    got = walk(
        row.snapshot,
        condition=row.condition,
        exit_met=row.exit_met,
        end_met=row.end_met,
        rounds_end_on_summary=row.rounds_end_on_summary,
    )
    for key, expected in row.expected.items():
        assert getattr(got, key) == expected, (key, got)


@pytest.mark.parametrize(
    ("max_steps", "executed", "stops"),
    [(None, 999, False), (None, 1000, True), (3, 2, False), (3, 3, True), (0, 999, False)],
)
def test_max_steps_reached(max_steps: int | None, executed: int, stops: bool) -> None:
    """The default is 1000; zero or nonsense means the default."""
    termination = {} if max_steps is None else {"max_steps": max_steps}
    reason = max_steps_reached(_snapshot(LINEAR, **termination), executed)
    assert (reason is not None) == stops
    if reason is not None:
        assert "termination_config.max_steps" in reason


@pytest.mark.parametrize(("failed", "attempt"), [(0, 1), (1, 2), (4, 5)])
def test_the_attempt_counts_the_failed_attempts_at_this_position(failed: int, attempt: int) -> None:
    snapshot = _snapshot(LINEAR)
    state = EngineState(failed_attempts=failed)
    plan = plan_step(snapshot, snapshot.first_step(), 1, state)
    assert plan.attempt == attempt
    # Moving on starts the count again.
    assert advance(snapshot, plan, state, log_id=1, ran=True).state.failed_attempts == 0


def test_a_loop_repeat_points_back_to_the_first_pass() -> None:
    snapshot = _snapshot(LOOP)
    state = EngineState()
    first = plan_step(snapshot, snapshot.first_step(), 1, state)
    assert first.parent_log_id is None
    state = advance(snapshot, first, state, log_id=11, ran=True).state
    second = plan_step(snapshot, snapshot.by_order[2], 1, state)
    state = advance(snapshot, second, state, log_id=12, ran=True).state
    repeat = plan_step(snapshot, snapshot.first_step(), 1, state)
    assert (repeat.loop_iteration, repeat.parent_log_id) == (1, 11)


def test_an_observed_jump_replays_a_decision_already_taken() -> None:
    """The replay (and MRC's log) hand in where the session went: the planner follows."""
    snapshot = _snapshot(LOOP)
    plan = plan_step(snapshot, snapshot.by_order[2], 1, EngineState())
    left = advance(snapshot, plan, EngineState(), log_id=1, ran=True, observed_jump=False)
    assert left.loop_result == "loop_break" and left.next_step == snapshot.by_order[3]
    jumped = advance(snapshot, plan, EngineState(), log_id=1, ran=True, observed_jump=True)
    assert jumped.loop_result == "loop_continue" and jumped.next_step == snapshot.by_order[1]
