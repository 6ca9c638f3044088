"""``session skip``: move a session on past its current (or failed) step as a false
condition would: one ``skipped`` log row and the next position, both written through
flowcli.engine.recording."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flowcli.db import session_store as store
from flowcli.db.step_tx import StepTx
from flowcli.engine import recording
from flowcli.engine.bounded import bounded, bounded_dumps
from flowcli.engine.conventions import conventions_for
from flowcli.engine.planner import advance, plan_step
from flowcli.engine.replay import current_state
from flowcli.errors import SessionStateError
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.db.connection import Database


SKIPPABLE_STATUSES = ("not_started", "running", "paused", "failed")


def skip_step(db: Database, session_id: int, reason: str | None = None) -> dict[str, Any]:
    """Mark the session's current (or failed) step skipped and move on, as a false
    condition would: one ``skipped`` log row (result_type ``skipped``, the reason in
    ``result_data``), no message, the next position. A failed session runs again."""
    from flowcli.engine.runner import recover_abandoned, resident_memory_mb

    conventions = conventions_for(db.owner)
    with db.write() as conn:
        row = store.load_session(conn, session_id, for_update=True)
        status = row.status or "not_started"
        if status not in SKIPPABLE_STATUSES:
            raise SessionStateError(
                f"cannot skip a step of session {session_id}: it is {status}"
                f" (skip applies to {', '.join(SKIPPABLE_STATUSES)} sessions)"
            )
        now = store.utcnow()
        snapshot = parse_snapshot(row.flow_snapshot)
        tx = StepTx.over(conn)
        state, _rebuilt = current_state(
            tx, row, snapshot, rounds_end_on_summary=conventions.rounds_end_on_summary
        )
        # A claim in flight makes the session busy; an abandoned one is marked failed.
        recover_abandoned(tx, row, state, now, owner=None)
        if status == "not_started" or row.current_step_id is None:
            step, round_ = snapshot.first_step(), 1
        else:
            step, round_ = snapshot.step(row.current_step_id), row.current_round or 1
        plan = plan_step(snapshot, step, round_, state)
        # Written as every execution is (flowcli.engine.recording): a skipped row, then
        # the position the planner's decision leaves.
        context = recording.context_snapshot(
            plan,
            executed=row.executed_steps_count or 0,
            variables=bounded(row.vars()),
            loops=json.loads(state.to_json())["loops"],
            context_ids=[],
        )
        order = tx.next_execution_order(row.id, row.executed_steps_count)
        values = recording.log_row(
            plan,
            session_id=row.id,
            execution_order=order,
            started_at=now,
            context=context,
            condition_value=None,
            memory_mb=resident_memory_mb(),
            status="skipped",
            result_type="skipped",
            duration_ms=0,
            completed_at=now,
        )
        log_id = recording.insert_log(tx, values)
        decision = advance(snapshot, plan, state, log_id=log_id, ran=False)
        data = {
            "skipped": True,
            "skipped_by": "user",
            "reason": reason,
            "decision": decision.reason,
            "next_step_id": decision.next_step.id if decision.next_step else None,
            "next_round": decision.next_round,
            "finished": decision.finished,
        }
        recording.close_log(tx, log_id, {"result_data": bounded_dumps(data)})
        session_values = recording.position_after(
            decision,
            order,
            step=step,
            keeps_last_step=conventions.keeps_last_step,
            now=now,
        )
        if not decision.finished:
            session_values["status"] = "paused" if status == "paused" else "running"
        recording.move_session(tx, row, session_values)
        log = store.fetch_log(conn, log_id)
    return {
        "session": row.position(),
        "previous_status": status,
        "step": {
            "id": step.id,
            "order": step.order,
            "speaker": step.speaker,
            "target": step.target,
            "task_type": step.task_type,
        },
        "log": log,
        "decision": decision.reason,
    }
