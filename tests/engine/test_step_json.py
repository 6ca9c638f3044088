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
