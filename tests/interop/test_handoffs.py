"""Hand-offs between MRC's own backend and flowcli, at every point of every looping flow.

For each looping flow of the fixture (1, 3, 4, 5, 7) and every k: MRC runs k steps and
flowcli continues; flowcli runs k steps and MRC continues. Each time the session runs
exactly the steps one engine alone runs, ends in the same position and round, and MRC's
next log-row number is free throughout. One MRC server serves the whole module.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.interop.harness import LOOPING_FLOWS, ONE_ENGINE, Shared

HANDOFFS = [(flow, k) for flow in LOOPING_FLOWS for k in range(len(ONE_ENGINE[flow]))]
END_COLUMNS = ("status", "current_step_id", "current_round", "executed_steps_count")


def _end(shared: Shared, sid: int) -> dict[str, Any]:
    row = shared.session_row(sid)
    return {c: row[c] for c in END_COLUMNS}


@pytest.fixture(scope="module")
def alone(shared: Shared) -> dict[int, dict[str, Any]]:
    """Each looping flow run start to end by MRC alone, and by flowcli alone."""
    ends: dict[int, dict[str, Any]] = {}
    for flow in LOOPING_FLOWS:
        by_mrc = shared.mrc_session(flow)
        shared.mrc.run_to_end(by_mrc)
        by_flowcli = shared.mrc_session(flow, start=False)
        shared.ok("auto", by_flowcli, "--quiet")
        assert shared.steps(by_mrc) == ONE_ENGINE[flow], f"MRC alone, flow {flow}"
        assert shared.steps(by_flowcli) == ONE_ENGINE[flow], f"flowcli alone, flow {flow}"
        assert _end(shared, by_flowcli) == _end(shared, by_mrc), f"flow {flow}"
        ends[flow] = _end(shared, by_mrc)
    return ends


def test_one_engine_alone_runs_the_same_steps(alone: dict[int, dict[str, Any]]) -> None:
    assert all(end["status"] == "finished" for end in alone.values())


@pytest.mark.slow
@pytest.mark.parametrize(("flow", "k"), HANDOFFS, ids=[f"flow{f}-k{k}" for f, k in HANDOFFS])
def test_mrc_runs_k_steps_then_flowcli_continues(
    shared: Shared, alone: dict[int, dict[str, Any]], flow: int, k: int
) -> None:
    sid = shared.mrc_session(flow)
    shared.mrc_steps(sid, k)
    shared.ok("auto", sid, "--quiet")
    assert shared.steps(sid) == ONE_ENGINE[flow]
    assert _end(shared, sid) == alone[flow]
    shared.assert_mrc_numbering_free(sid)


@pytest.mark.slow
@pytest.mark.parametrize(("flow", "k"), HANDOFFS, ids=[f"flow{f}-k{k}" for f, k in HANDOFFS])
def test_flowcli_runs_k_steps_then_mrc_continues(
    shared: Shared, alone: dict[int, dict[str, Any]], flow: int, k: int
) -> None:
    sid = shared.mrc_session(flow, start=False)
    if k:
        shared.ok("auto", sid, "--max-steps", k, "--quiet")
        shared.assert_mrc_numbering_free(sid)
    session = shared.mrc_continues(sid)
    assert session["status"] == "finished"
    assert shared.steps(sid) == ONE_ENGINE[flow]
    assert _end(shared, sid) == alone[flow]
    shared.assert_mrc_numbering_free(sid)
