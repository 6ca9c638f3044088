"""The step's JSON, built without json.dumps's per-call set-up, is json.dumps's text."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowcli.db.engine_state import EngineState, LoopState
from flowcli.engine.bounded import compact_dumps

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_values)
def test_compact_dumps_is_json_dumps(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    assert compact_dumps(value) == expected


# Small enough that a snapshot never reaches the bound (where context_snapshot cuts).
_small_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


def _reference(state: EngineState) -> str:
    data = {"loops": state.loops_json(), "failed_attempts": state.failed_attempts, "at": state.at}
    return json.dumps(data, separators=(",", ":"))


_ints = st.integers(-(2**40), 2**40)


@given(
    st.dictionaries(
        _ints, st.tuples(_ints | st.booleans(), st.dictionaries(_ints, _ints)), max_size=4
    ),
    _ints | st.booleans(),
    st.none() | _ints,
)
def test_engine_state_text_is_json_dumps(
    loops: dict[int, tuple[Any, dict[int, int]]], attempts: Any, at: int | None
) -> None:
    # A hostile stored state can carry a boolean where a count belongs: still json's text.
    state = EngineState(
        loops={k: LoopState(jumps, firsts) for k, (jumps, firsts) in loops.items()},
        failed_attempts=attempts,
        at=at,
    )
    assert state.to_json() == _reference(state)
    assert (
        EngineState.from_json(state.to_json()).to_json()
        == EngineState.from_json(_reference(state)).to_json()
    )


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.dictionaries(st.text(max_size=8), _small_values, max_size=5),
    st.lists(st.integers(1, 10**9), max_size=70),
    st.sampled_from(["all", "last_message", "none", ["A", "B ü"], "last_n_messages"]),
    st.dictionaries(st.integers(1, 9), st.integers(0, 99), max_size=3),
)
def test_context_snapshot_text_is_context_snapshot(
    round_: int,
    executed: int,
    variables: dict[str, Any],
    context_ids: list[int],
    scope: Any,
    jumps: dict[int, int],
) -> None:
    from flowcli.engine.planner import StepPlan
    from flowcli.engine.recording import context_snapshot, context_snapshot_text
    from flowcli.flows.snapshot import step_from_dict

    step = step_from_dict({"id": 3, "order": 2, "speaker_role_ref": "A", "context_scope": scope})
    plan = StepPlan(
        step=step,
        round=round_,
        loop=None,
        loop_iteration=executed % 7,
        parent_log_id=None,
        attempt=1 + executed % 3,
    )
    state = EngineState(loops={k: LoopState(v, {k: v}) for k, v in jumps.items()})
    text = context_snapshot_text(
        plan,
        executed=executed,
        vars_text=compact_dumps(variables),
        state=state,
        context_ids=context_ids,
    )
    expected = context_snapshot(
        plan,
        executed=executed,
        variables=variables,
        loops=state.loops_json(),
        context_ids=context_ids,
    )
    assert text == expected
