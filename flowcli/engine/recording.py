"""Where a log row is written, and the session moved with it.

Every execution flowcli logs goes through here: a step (the runner, and so ``session
retry``), a skip (``session skip``) and a fork's copies (``session fork``).
``log_row`` builds a row's values, ``insert_log``/``close_log`` write it,
``position_after`` is the session position a planner decision leaves, and
``move_session`` writes it with the version check (no lost update).

MRC-safe numbering: a row is numbered ``max(executed_steps_count, max order) + 1``
(``StepTx.next_execution_order``) and every row written sets ``executed_steps_count``
to its own number, so MRC's next number (count + 1) is always free.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowcli.db.tables import STEP_LOG_COLUMNS
from flowcli.engine.bounded import bounded_dumps

if TYPE_CHECKING:
    from flowcli.db.session_store import SessionRow
    from flowcli.db.step_tx import StepTx
    from flowcli.engine.planner import Advance, StepPlan
    from flowcli.flows.snapshot import Step

# How many context message ids a log row keeps (the count says how many there were).
CONTEXT_IDS_KEPT = 50
# A fork's copy takes these columns as they are; the rest point at other rows (remapped).
COPIED_COLUMNS = tuple(
    c
    for c in STEP_LOG_COLUMNS
    if c not in ("session_id", "parent_log_id", "result_data", "context_snapshot")
)


def context_snapshot(
    plan: StepPlan,
    *,
    executed: int,
    variables: Any,
    loops: Any,
    context_ids: list[int],
) -> str:
    """The ``context_snapshot`` of an execution: its counters, the variables, the loop
    counters and the messages it was shown (bounded)."""
    return bounded_dumps(
        {
            "round": plan.round,
            "step_order": plan.step.order,
            "loop_iteration": plan.loop_iteration,
            "attempt": plan.attempt,
            "executed_steps": executed,
            "vars": variables,
            "loops": loops,
            "context": {
                "scope": plan.step.context_scope,
                "message_ids": context_ids[-CONTEXT_IDS_KEPT:],
                "count": len(context_ids),
                "truncated": len(context_ids) > CONTEXT_IDS_KEPT,
            },
        }
    )


def log_row(
    plan: StepPlan,
    *,
    session_id: int,
    execution_order: int,
    started_at: datetime,
    context: str,
    condition_value: bool | None,
    memory_mb: float | None,
    **outcome: Any,
) -> dict[str, Any]:
    """A log row's values: where and when it ran, then ``outcome`` (status, result…)."""
    values: dict[str, Any] = {
        "session_id": session_id,
        "step_id": plan.step.id,
        "parent_log_id": plan.parent_log_id,
        "execution_order": execution_order,
        "round_index": plan.round,
        "loop_iteration": plan.loop_iteration,
        "attempt_count": plan.attempt,
        "condition_evaluation": condition_value,
        "created_at": started_at,
        "started_at": started_at,
        "step_snapshot": plan.step.snapshot_json,
        "context_snapshot": context,
        "memory_usage_mb": memory_mb,
    }
    values.update(outcome)
    return values


def copied_log_row(
    log: dict[str, Any],
    *,
    session_id: int,
    parent_log_id: int | None,
    result_data: str | None,
    context_snapshot: Any,
) -> dict[str, Any]:
    """A fork's copy of ``log``: every column as it was, the references remapped."""
    values = {c: log[c] for c in COPIED_COLUMNS}
    values.update(
        session_id=session_id,
        parent_log_id=parent_log_id,
        result_data=result_data,
        context_snapshot=context_snapshot,
    )
    return values


def insert_log(tx: StepTx, values: dict[str, Any]) -> int:
    """Write a log row (complete, once); its id."""
    return tx.insert_log(values)


def close_log(
    tx: StepTx, log_id: int, values: dict[str, Any], *, only_running: bool = False
) -> None:
    """Finish a claimed (``running``) row with its outcome."""
    tx.update_log(log_id, values, only_running=only_running)


def position_after(
    decision: Advance,
    execution_order: int,
    *,
    step: Step,
    keeps_last_step: bool,
    now: datetime,
) -> dict[str, Any]:
    """The session's values after an execution numbered ``execution_order`` and the
    planner's ``decision``: the next position, the count, the loop state, and on the
    last step ``finished`` (MRC keeps the last step as the current one)."""
    values: dict[str, Any] = {
        "current_step_id": decision.next_step.id if decision.next_step else None,
        "current_round": decision.next_round,
        # Every logged execution counts, so MRC's next number (count + 1) is free.
        "executed_steps_count": execution_order,
        "engine_state": decision.state.stamped(execution_order).to_json(),
        "error_reason": None,
    }
    if decision.finished:
        values["status"] = "finished"
        values["ended_at"] = now
        if keeps_last_step:
            values["current_step_id"] = step.id
    return values


def move_session(tx: StepTx, row: SessionRow, values: dict[str, Any]) -> None:
    """Write the session's new values if it is still at the version read."""
    tx.update_session(row, values)
