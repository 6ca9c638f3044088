"""Where the next step is chosen: conditions, loops, rounds and termination.

Pure decisions over a session's snapshot, position and EngineState; no database and
no I/O. ``max_steps_reached`` says whether the session may take another step at all,
``plan_step`` what runs now and with which counters, ``advance`` where the session goes
after it (loops, rounds, ``next_step_id``, the end of the flow and ``end_condition``).
The values of conditions are evaluated by the runner and handed in: a decision here
never runs an expression. docs/engine.md states these rules in prose.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowcli.db.engine_state import EngineState, LoopState
from flowcli.flows.snapshot import FlowSnapshot, Loop, Step


@dataclass
class StepPlan:
    """What is about to run: the step, its round, its loop counters and its attempt."""

    step: Step
    round: int
    loop: Loop | None  # the innermost loop whose body holds this step
    loop_iteration: int
    parent_log_id: int | None
    attempt: int  # 1 for the first try at this position


@dataclass
class Advance:
    """Where the session goes after a step ran (or was skipped)."""

    next_step: Step | None
    next_round: int
    finished: bool
    state: EngineState
    loop_result: str | None = None  # loop_continue | loop_break
    loop_check_result: bool | None = None
    reason: str = ""


def max_steps_reached(snapshot: FlowSnapshot, executed: int) -> str | None:
    """Why the session may not take another step (``termination_config.max_steps``
    executions are logged), or None."""
    if executed >= snapshot.max_steps:
        return (
            f"reached termination_config.max_steps ({snapshot.max_steps}) before the flow finished"
        )
    return None


def plan_step(snapshot: FlowSnapshot, step: Step, round_: int, state: EngineState) -> StepPlan:
    loop = snapshot.innermost_loop(step.order)
    iteration = 0
    parent = None
    if loop is not None and loop.at_order in state.loops:
        loop_state = state.loops[loop.at_order]
        iteration = loop_state.jumps
        if iteration > 0:
            parent = loop_state.first_logs.get(step.order)
    return StepPlan(
        step=step,
        round=round_,
        loop=loop,
        loop_iteration=iteration,
        parent_log_id=parent,
        attempt=state.failed_attempts + 1,
    )


# MRC ends a round after these steps: on MRC's databases the round goes up after them.
ROUND_ENDING_TASKS = frozenset({"summarize", "conclude"})


def advance(
    snapshot: FlowSnapshot,
    plan: StepPlan,
    state: EngineState,
    *,
    log_id: int,
    ran: bool,
    exit_condition_met: bool | None = None,
    end_condition_met: bool = False,
    observed_jump: bool | None = None,
    rounds_end_on_summary: bool = False,
) -> Advance:
    """Decide the next position. ``ran`` is False for a skipped step (no loop decision).

    ``exit_condition_met`` is the loop's exit condition's value after the step ran;
    ``end_condition_met`` the flow's ``end_condition``'s: when true the session finishes
    here, wherever the flow would have gone next.

    ``observed_jump`` replays a loop decision already taken (by flowcli or by MRC, read
    from where the session went next) instead of deciding it. ``rounds_end_on_summary``
    is MRC's convention: the round goes up by one after a summarize or conclude step
    that ran; a wrap to the first step after such a step does not add another.
    """
    new_state = state.copy()
    new_state.failed_attempts = 0
    step = plan.step

    # Remember each step's first pass, so its repeats can point back to it.
    if plan.loop is not None:
        loop_state = new_state.loops.setdefault(plan.loop.at_order, LoopState())
        if plan.loop_iteration == 0:
            loop_state.first_logs.setdefault(step.order, log_id)

    loop_result: str | None = None
    loop_check: bool | None = None
    reason = ""
    target: Step | None = None
    if ran and step.loop is not None:
        own = new_state.loops.setdefault(step.order, LoopState())
        jumps = own.jumps
        if exit_condition_met or observed_jump is False:
            loop_result, loop_check = "loop_break", False
            reason = (
                f"exit condition met: loop ends after {jumps} jump(s)"
                if exit_condition_met
                else f"the loop was left after {jumps} jump(s)"
            )
        elif observed_jump or jumps < step.loop.max_loops:
            loop_result, loop_check = "loop_continue", True
            own.jumps = jumps + 1
            target = snapshot.by_order.get(step.loop.to_order)
            reason = (
                f"loop back to step {step.loop.to_order} "
                f"(jump {jumps + 1} of {step.loop.max_loops})"
            )
        else:
            loop_result, loop_check = "loop_break", False
            reason = f"loop done: {jumps} of {step.loop.max_loops} jumps made"
        if loop_result == "loop_break":
            # Leaving the loop: counters start again from 0 if it is entered anew.
            new_state.loops.pop(step.order, None)

    next_round = plan.round
    if rounds_end_on_summary and ran and step.task_type in ROUND_ENDING_TASKS:
        next_round = plan.round + 1
    finished = False
    if target is None and step.next_step_id is not None and step.next_step_id in snapshot.by_id:
        target = snapshot.by_id[step.next_step_id]
        reason = reason or f"next_step_id points to step {target.order}"
    if target is None:
        target = snapshot.following(step)
        if target is not None:
            reason = reason or "next step in order"
    if target is None:
        if plan.round < snapshot.max_rounds:
            target = snapshot.first_step()
            next_round = plan.round + 1  # the same as a summary's raise, never both
            new_state.loops.clear()
            reason = (reason + "; " if reason else "") + f"round {next_round} begins"
        else:
            finished = True
            new_state.loops.clear()
            reason = (reason + "; " if reason else "") + "last step of the last round: finished"

    if target is not None:
        # A loop whose body no longer holds the session's position has been left.
        for at_order in list(new_state.loops):
            body = snapshot.by_order.get(at_order)
            if body is None or body.loop is None or not body.loop.contains(target.order):
                new_state.loops.pop(at_order, None)

    decision = Advance(
        next_step=None if finished else target,
        next_round=next_round,
        finished=finished,
        state=new_state,
        loop_result=loop_result,
        loop_check_result=loop_check,
        reason=reason,
    )
    if end_condition_met and not decision.finished:
        decision.finished = True
        decision.next_step = None
        decision.state.loops.clear()
        decision.reason += "; end_condition is true: finished"
    return decision
