"""Why the next step is next, read-only: used by ``run-next --dry-run`` and ``explain``.

It evaluates the step's condition against the session as it is now, shows the loop
counters and the jumps left, the round and how far the session is from its limits,
and repeats the decision the previous execution recorded. It never writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowcli.db.session_row import ENDED_STATUSES
from flowcli.errors import ExpressionError
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.db.connection import Database


def explain_next(db: Database, session_id: int) -> dict[str, Any]:
    from flowcli.engine.conventions import conventions_for
    from flowcli.engine.replay import current_state
    from flowcli.engine.upcoming import upcoming_step

    conventions = conventions_for(db.owner)
    # Read on the bare driver where it can be (a SQLite file): explain imports no SQLAlchemy.
    with db.step_read() as tx:
        row = tx.load_session(session_id)
        snapshot = parse_snapshot(row.flow_snapshot)
        status = row.status or "not_started"
        state, rebuilt = current_state(
            tx,
            row,
            snapshot,
            rounds_end_on_summary=conventions.rounds_end_on_summary,
        )
        out: dict[str, Any] = {
            "session_id": session_id,
            "status": status,
            "flow": snapshot.data.get("name"),
            "round": row.current_round,
            "max_rounds": snapshot.max_rounds,
            "executed_steps": row.executed_steps_count or 0,
            "max_steps": snapshot.max_steps,
            "steps_left_before_max_steps": max(
                0, snapshot.max_steps - (row.executed_steps_count or 0)
            ),
            "warnings": snapshot.warnings(),
            # Where the loop counters and attempts come from: the cache, or the log.
            "engine_state": "rebuilt from the log" if rebuilt else "cached",
        }
        last = tx.newest_log(session_id)
        if last is not None:
            from flowcli.db.json_text import loads_json

            data = loads_json(last["result_data"], {})
            out["previous"] = {
                "log_id": last["id"],
                "execution_order": last["execution_order"],
                "status": last["status"],
                "result_type": last["result_type"],
                "decision": data.get("decision") if isinstance(data, dict) else None,
                "error": last["error_message"],
            }
        if status in ENDED_STATUSES:
            out["runnable"] = False
            out["blocked_reason"] = f"the session is {status}"
            out["step"] = None
            return out
        upcoming = upcoming_step(tx, row, snapshot, state=state)
        step, plan, round_, will_start = (
            upcoming.step,
            upcoming.plan,
            upcoming.round,
            upcoming.will_start,
        )
        names = upcoming.names
        out["round"] = round_
        out["will_start"] = will_start
        out["runnable"] = status in ("running", "not_started")
        out["blocked_reason"] = (
            None
            if out["runnable"]
            else (
                f"the session is {status}" + (f": {row.error_reason}" if row.error_reason else "")
            )
        )
        out["step"] = {
            "id": step.id,
            "order": step.order,
            "speaker": step.speaker,
            "target": step.target,
            "task_type": step.task_type,
            "context_scope": step.context_scope,
            "description": step.description,
        }
        out["loop_iteration"] = plan.loop_iteration
        out["attempt"] = plan.attempt
        out["parent_log_id"] = plan.parent_log_id
        cond = step.condition
        if cond is None:
            out["condition"] = None
        else:
            # The sandbox is loaded only for a step that has a condition.
            from flowcli.sandbox.expressions import compile_expression

            try:
                value: bool | None = compile_expression(cond).evaluate_bool(names)
                error = None
            except ExpressionError as exc:
                value, error = None, str(exc)
            out["condition"] = {
                "expr": cond,
                "value": value,
                "error": error,
                "effect": "runs" if value else ("skipped" if error is None else "fails"),
            }
        loops = []
        if plan.loop is not None:
            loops.append(plan.loop)
        if step.loop is not None and step.loop not in loops:
            loops.append(step.loop)
        out["loops"] = []
        for loop in loops:
            jumps = state.loops[loop.at_order].jumps if loop.at_order in state.loops else 0
            out["loops"].append(
                {
                    "loop_step_order": loop.at_order,
                    "back_to_order": loop.to_order,
                    "max_loops": loop.max_loops,
                    "jumps_made": jumps,
                    "jumps_left": max(0, loop.max_loops - jumps),
                    "this_step_is_the_loop_step": loop.at_order == step.order,
                    "if_run": (
                        f"jump back to step {loop.to_order}"
                        if jumps < loop.max_loops
                        else "leave the loop"
                    )
                    if loop.at_order == step.order
                    else None,
                }
            )
        if snapshot.end_condition:
            out["end_condition"] = snapshot.end_condition
        remaining = [s for s in snapshot.steps if s.order > step.order]
        out["steps_left_in_round"] = len(remaining) + 1
        out["rounds_left"] = max(0, snapshot.max_rounds - round_)
        return out
