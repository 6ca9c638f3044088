"""The step a session would run next (``upcoming_step``), read-only: the one way the
breakpoints (flowcli.engine.breakpoints) and ``explain`` work it out, with its round, loop
iteration, attempt and the expression names a step condition or ``--break-when`` sees.

A module of its own so ``explain`` loads it without the breakpoint machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowcli.db.step_tx import StepTx
from flowcli.engine.planner import StepPlan, plan_step
from flowcli.flows.snapshot import Step

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from flowcli.db.engine_state import EngineState
    from flowcli.db.session_row import SessionRow
    from flowcli.flows.snapshot import FlowSnapshot


@dataclass(frozen=True)
class UpcomingStep:
    """The step a session would run next, with the counters it would run with."""

    session_id: int
    step: Step
    round: int
    loop_iteration: int
    attempt: int
    will_start: bool  # the session has not started: this is its first step
    plan: StepPlan = field(repr=False, compare=False)
    names: Mapping[str, Any] = field(repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """Plain data for JSON and rendering."""
        return {
            "step_id": self.step.id,
            "order": self.step.order,
            "speaker": self.step.speaker,
            "target": self.step.target,
            "task_type": self.step.task_type,
            "round": self.round,
            "loop_iteration": self.loop_iteration,
            "attempt": self.attempt,
        }

    def label(self) -> str:
        arrow = f" → {self.step.target}" if self.step.target else ""
        return (
            f"step {self.step.order} {self.step.speaker}{arrow} ({self.step.task_type}), "
            f"round {self.round}, loop iteration {self.loop_iteration}"
            + (f", attempt {self.attempt}" if self.attempt > 1 else "")
        )


def upcoming_step(
    conn: Connection | StepTx,
    row: SessionRow,
    snapshot: FlowSnapshot,
    *,
    state: EngineState | None = None,
    rounds_end_on_summary: bool = False,
) -> UpcomingStep:
    """The next step of a session that has one (not ended).

    Its counters come from ``state`` or, without one, from the session's engine state,
    rebuilt from the log when that cache is absent or stale (flowcli.engine.replay), so a
    session MRC ran is read right. The names are the ones a step's condition sees;
    ``last`` and ``messages`` are read (through ``conn``) only if an expression uses them,
    so use them inside the same read.
    """
    from flowcli.engine.replay import current_state
    from flowcli.engine.step_names import LazyNames, message_view

    status = row.status or "not_started"
    tx = conn if isinstance(conn, StepTx) else StepTx.over(conn)
    if state is None:
        state, _rebuilt = current_state(
            tx, row, snapshot, rounds_end_on_summary=rounds_end_on_summary
        )
    will_start = status == "not_started" or row.current_step_id is None
    step = snapshot.first_step() if will_start else snapshot.step(row.current_step_id)
    round_ = 1 if will_start else (row.current_round or 1)
    plan = plan_step(snapshot, step, round_, state)
    sid = row.id
    names = LazyNames(
        {
            "round": round_,
            "step": step.order,
            "loop_iteration": plan.loop_iteration,
            "executed_steps": row.executed_steps_count or 0,
            "topic": row.topic,
            "vars": row.vars(),
            "speaker": step.speaker,
            "target": step.target,
            "task_type": step.task_type,
        },
        {
            "last": lambda: message_view(tx.last_message_view(sid)),
            "messages": lambda: [
                message_view(r) for r in tx.message_views(sid, scope="all", round_=0)
            ],
        },
    )
    return UpcomingStep(
        session_id=sid,
        step=step,
        round=round_,
        loop_iteration=plan.loop_iteration,
        attempt=plan.attempt,
        will_start=will_start,
        plan=plan,
        names=names,
    )
