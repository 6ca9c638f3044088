"""Debugging a session: fork it after an execution, retry or skip its step, compare two.

A fork's position and loop counters are rebuilt by replaying the planner over the
copied executions (flowcli.engine.replay), exactly as the engine reached them. Skip
moves a session on as a false condition would. Diff aligns two sessions' executions by position.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from flowcli.db import session_store as store
from flowcli.db.engine_state import EngineState
from flowcli.db.json_text import loads_json
from flowcli.db.log_queries import (
    FAILURE_STATUSES,
    IN_FLIGHT_STATUSES,
    iter_logs,
    message_contents,
    step_info,
)
from flowcli.db.step_tx import StepTx
from flowcli.engine import recording
from flowcli.engine.bounded import bounded, bounded_dumps
from flowcli.engine.conventions import conventions_for
from flowcli.engine.planner import advance, plan_step
from flowcli.engine.replay import Replay, current_state
from flowcli.errors import SessionStateError, UsageError
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.db.connection import Database
    from flowcli.engine.responders import ResponderOptions
    from flowcli.engine.runner import StepResult

COPY_BATCH = 1000


# --- fork -----------------------------------------------------------------------------


def _batches(
    conn: Connection, stmt_for: Callable[[int], Any], key: str
) -> Iterator[dict[str, Any]]:
    """Rows in keyset-paged batches: bounded memory while the same connection inserts."""
    after = -1
    while True:
        rows = [dict(r) for r in conn.execute(stmt_for(after)).mappings()]
        if not rows:
            return
        yield from rows
        after = rows[-1][key]


def remap_result_data(raw: str | None, message_map: dict[int, int]) -> str | None:
    """A log's result_data pointing at the copied message (fork; archive restore)."""
    data = loads_json(raw, None)
    if not isinstance(data, dict) or data.get("message_id") not in message_map:
        return raw
    data["message_id"] = message_map[data["message_id"]]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def remap_context(raw: str | None, message_map: dict[int, int], log_map: dict[int, int]) -> Any:
    """A log's context_snapshot with its message ids and first-pass log ids remapped."""
    data = loads_json(raw, None)
    if not isinstance(data, dict):
        return raw
    ctx = data.get("context")
    if isinstance(ctx, dict) and isinstance(ctx.get("message_ids"), list):
        ctx["message_ids"] = [message_map.get(m, m) for m in ctx["message_ids"]]
    loops = data.get("loops")
    if isinstance(loops, dict):
        for loop in loops.values():
            first = loop.get("first_logs") if isinstance(loop, dict) else None
            if isinstance(first, dict):
                loop["first_logs"] = {k: log_map.get(v, v) for k, v in first.items()}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _last_message_id(conn: Connection, session_id: int, at_order: int) -> int | None:
    """The newest message the prefix wrote (completed logs record their message id)."""
    logs_t = store.logs_t
    rows = conn.execute(
        select(logs_t.c.result_data)
        .where(
            logs_t.c.session_id == session_id,
            logs_t.c.execution_order <= at_order,
            logs_t.c.status == "completed",
        )
        .order_by(logs_t.c.execution_order.desc())
    )
    for (raw,) in rows:
        mid = _message_id(raw)
        if mid is not None:
            return mid
    return None


def _session_writes_message_ids(conn: Connection, session_id: int) -> bool:
    logs_t = store.logs_t
    raw = conn.execute(
        select(logs_t.c.result_data)
        .where(logs_t.c.session_id == session_id, logs_t.c.result_data.like('%"message_id"%'))
        .limit(1)
    ).scalar()
    return raw is not None


def fork_session(
    db: Database, session_id: int, at_log_id: int, set_vars: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A new session whose state is the source's right after execution ``at_log_id``.

    Copied, in one transaction, with new ids: the session roles, the messages written up
    to that execution, and the executions with execution_order ≤ its own. Every
    reference among the copies is remapped to the copies (parent_log_id,
    reply_to_message_id, speaker/target session roles, ``result_data.message_id``, the
    message ids and first-pass log ids in ``context_snapshot``), so the fork stands on
    its own. Lineage goes in ``forked_from_session_id`` / ``forked_from_log_id``.
    """
    msgs_t = store.messages_t
    logs_t = store.logs_t
    sr_t = store.session_roles_t
    now = store.utcnow()
    conventions = conventions_for(db.owner)
    with db.write() as conn:
        src = store.load_session(conn, session_id)
        at = store.fetch_log(conn, at_log_id)
        if at["session_id"] != session_id:
            raise UsageError(
                f"log {at_log_id} belongs to session {at['session_id']}, not session {session_id}"
            )
        if at["status"] in IN_FLIGHT_STATUSES:
            raise SessionStateError(
                f"log {at_log_id} is still {at['status']}; fork at an execution that has ended"
            )
        snapshot = parse_snapshot(src.flow_snapshot)
        variables = {**src.vars(), **(set_vars or {})}
        try:
            vars_json = json.dumps(variables, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            raise UsageError("--set values are not JSON-serialisable") from None
        at_order = int(at["execution_order"])
        new_id = int(
            conn.execute(
                insert(store.sessions_t).values(
                    user_id=conn.execute(
                        select(store.sessions_t.c.user_id).where(store.sessions_t.c.id == src.id)
                    ).scalar(),
                    topic=src.topic,
                    flow_template_id=src.flow_template_id,
                    flow_snapshot=src.flow_snapshot,
                    roles_snapshot=src.roles_snapshot,
                    status="running",
                    current_round=1,
                    executed_steps_count=0,
                    created_at=now,
                    updated_at=now,
                    version=1,
                    variables=vars_json,
                    engine_state=EngineState().to_json(),
                    forked_from_session_id=src.id,
                    forked_from_log_id=at_log_id,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )

        role_map: dict[int, int] = {}
        for sr in conn.execute(
            select(sr_t).where(sr_t.c.session_id == src.id).order_by(sr_t.c.id)
        ).mappings():
            result = conn.execute(
                insert(sr_t).values(
                    session_id=new_id,
                    role_ref=sr["role_ref"],
                    role_id=sr["role_id"],
                    created_at=sr["created_at"],
                )
            )
            role_map[sr["id"]] = int(result.inserted_primary_key[0])  # type: ignore[index]

        # The prefix's messages: up to the newest one its executions wrote. Legacy (MRC)
        # rows record no message ids; there the messages created by then are taken.
        msg_cond: Any
        last_mid = _last_message_id(conn, src.id, at_order)
        if last_mid is not None:
            msg_cond = msgs_t.c.id <= last_mid
        elif _session_writes_message_ids(conn, src.id):
            msg_cond = msgs_t.c.id < 0  # nothing written yet at that point
        else:
            moment = at.get("completed_at") or at.get("created_at")
            msg_cond = msgs_t.c.created_at <= moment if moment is not None else msgs_t.c.id < 0
        message_map: dict[int, int] = {}
        for msg in _batches(
            conn,
            lambda after: (
                select(msgs_t)
                .where(msgs_t.c.session_id == src.id, msgs_t.c.id > after, msg_cond)
                .order_by(msgs_t.c.id)
                .limit(COPY_BATCH)
            ),
            "id",
        ):
            result = conn.execute(
                insert(msgs_t).values(
                    session_id=new_id,
                    speaker_session_role_id=role_map.get(msg["speaker_session_role_id"]),
                    target_session_role_id=role_map.get(msg["target_session_role_id"]),
                    reply_to_message_id=message_map.get(msg["reply_to_message_id"]),
                    content=msg["content"],
                    content_summary=msg["content_summary"],
                    round_index=msg["round_index"],
                    section=msg["section"],
                    created_at=msg["created_at"],
                )
            )
            message_map[msg["id"]] = int(result.inserted_primary_key[0])  # type: ignore[index]

        log_map: dict[int, int] = {}
        copier = StepTx.over(conn)
        replay = Replay(
            snapshot,
            rounds_end_on_summary=conventions.rounds_end_on_summary,
            log_id_for=lambda row: log_map[row["id"]],
        )
        copied_logs = 0
        for log in _batches(
            conn,
            lambda after: (
                select(logs_t)
                .where(
                    logs_t.c.session_id == src.id,
                    logs_t.c.execution_order > after,
                    logs_t.c.execution_order <= at_order,
                )
                .order_by(logs_t.c.execution_order)
                .limit(COPY_BATCH)
            ),
            "execution_order",
        ):
            values = recording.copied_log_row(
                log,
                session_id=new_id,
                parent_log_id=log_map.get(log["parent_log_id"]),
                result_data=remap_result_data(log["result_data"], message_map),
                context_snapshot=remap_context(log["context_snapshot"], message_map, log_map),
            )
            new_log_id = recording.insert_log(copier, values)
            log_map[log["id"]] = new_log_id
            replay.feed(log)
            copied_logs += 1
        _finish_at_fork_point(conn, replay, src, at_order)

        last_step = at["step_id"] if conventions.keeps_last_step else None
        position: dict[str, Any] = {
            "current_step_id": last_step if replay.finished else replay.step_id,
            "current_round": replay.round,
            # The copies keep their numbers: the fork's next row is numbered above them.
            "executed_steps_count": at_order,
            "engine_state": replay.state.stamped(at_order).to_json(),
            "status": "finished" if replay.finished else "running",
            "ended_at": (at.get("completed_at") or now) if replay.finished else None,
        }
        conn.execute(
            update(store.sessions_t).where(store.sessions_t.c.id == new_id).values(**position)
        )
    return {
        "id": new_id,
        "forked_from_session_id": session_id,
        "forked_from_log_id": at_log_id,
        "execution_order": at_order,
        "status": position["status"],
        "current_step_id": position["current_step_id"],
        "current_round": position["current_round"],
        "attempt": replay.state.failed_attempts + 1,
        "copied": {
            "step_execution_logs": copied_logs,
            "messages": len(message_map),
            "session_roles": len(role_map),
        },
        "variables": variables,
    }


def _finish_at_fork_point(
    conn: Connection, replay: Replay, src: store.SessionRow, at_order: int
) -> None:
    """Apply the fork point's row, knowing where the source session went after it."""
    logs_t = store.logs_t
    after = conn.execute(
        select(logs_t.c.step_id, logs_t.c.round_index)
        .where(logs_t.c.session_id == src.id, logs_t.c.execution_order > at_order)
        .order_by(logs_t.c.execution_order)
        .limit(1)
    ).first()
    if after is not None:
        replay.finish(then_step_id=after[0], then_round=after[1], then_finished=False)
    elif src.status == "finished":
        replay.finish(then_step_id=None, then_round=src.current_round, then_finished=True)
    elif src.status == "running":
        replay.finish(then_step_id=src.current_step_id, then_round=src.current_round)
    else:
        replay.finish()


# --- retry and skip -------------------------------------------------------------------


def retry_failed_step(
    db: Database,
    session_id: int,
    options: ResponderOptions | None = None,
    *,
    retries: int = 2,
    backoff: float = 0.5,
) -> StepResult:
    """Run a failed session's failed step again: resume, then exactly one step."""
    from flowcli.engine.lifecycle import transition
    from flowcli.engine.runner import run_next_step

    with db.read() as conn:
        row = store.load_session(conn, session_id)
    if row.status != "failed":
        raise SessionStateError(
            f"session {session_id} is {row.status or 'not_started'}, not failed; "
            "retry runs the step of a failed session (use `flowcli run-next` otherwise)"
        )
    transition(db, session_id, "resume")
    return run_next_step(db, session_id, options, retries=retries, backoff=backoff)


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


# --- diff -----------------------------------------------------------------------------


def _message_id(raw: Any) -> int | None:
    data = loads_json(raw, {})
    mid = data.get("message_id") if isinstance(data, dict) else None
    return mid if isinstance(mid, int) and not isinstance(mid, bool) else None


def _positions(db: Database, session_id: int) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """A session's positions in order, each with its last attempt.

    A position is (round, step order, loop iteration, occurrence): the occurrence
    counts revisits of the same triple (nested loops, next_step_id jumps). Failed
    attempts followed by another attempt at the same step belong to one position.
    """
    out: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    seen: dict[tuple[int, int, int], int] = {}
    with db.read() as conn:
        store.load_session(conn, session_id)
        previous: dict[str, Any] | None = None
        for log in iter_logs(conn, session_id):
            info = step_info(log.get("step_snapshot"))
            order = info.get("order")
            triple = (
                int(log.get("round_index") or 1),
                int(order) if isinstance(order, int) else -int(log["step_id"]),
                int(log.get("loop_iteration") or 0),
            )
            entry = {
                "log_id": log["id"],
                "execution_order": log["execution_order"],
                "attempt_count": log["attempt_count"],
                "step_id": log["step_id"],
                "speaker": info.get("speaker"),
                "task_type": info.get("task_type"),
                "status": log["status"],
                "result_type": log["result_type"],
                "message_id": _message_id(log.get("result_data")),
            }
            same_position = (
                previous is not None
                and previous["status"] in (*FAILURE_STATUSES, *IN_FLIGHT_STATUSES)
                and previous["triple"] == triple
            )
            if same_position:
                out[-1] = (out[-1][0], entry)
            else:
                seen[triple] = seen.get(triple, 0) + 1
                out.append(((*triple, seen[triple]), entry))
            previous = {"status": log["status"], "triple": triple}
        ids = [e["message_id"] for _, e in out if e["message_id"] is not None]
        contents = message_contents(conn, session_id, ids)
    for _, entry in out:
        msg = contents.get(entry.pop("message_id"))
        entry["content"] = msg["content"] if msg else None
    return out


def _align(
    a: list[tuple[tuple[int, ...], dict[str, Any]]],
    b: list[tuple[tuple[int, ...], dict[str, Any]]],
) -> list[tuple[tuple[int, ...], dict[str, Any] | None, dict[str, Any] | None]]:
    """A's positions in order, each of B's own positions placed after its predecessor."""
    b_by_key = dict(b)
    a_keys = {k for k, _ in a}
    after: dict[tuple[int, ...] | None, list[tuple[int, ...]]] = {}
    anchor: tuple[int, ...] | None = None
    for key, _ in b:
        if key in a_keys:
            anchor = key
        else:
            after.setdefault(anchor, []).append(key)
    rows: list[tuple[tuple[int, ...], dict[str, Any] | None, dict[str, Any] | None]] = []
    rows.extend((k, None, b_by_key[k]) for k in after.get(None, []))
    for key, entry in a:
        rows.append((key, entry, b_by_key.get(key)))
        rows.extend((k, None, b_by_key[k]) for k in after.get(key, []))
    return rows


DIFF_FIELDS = ("status", "result_type", "content")


def diff_sessions(db: Database, session_a: int, session_b: int) -> dict[str, Any]:
    """Two sessions' executions aligned by position, with what differs in each."""
    if session_a == session_b:
        raise UsageError("give two different sessions to compare")
    positions_a = _positions(db, session_a)
    positions_b = _positions(db, session_b)
    rows = []
    summary = {"same": 0, "different": 0, "only_a": 0, "only_b": 0}
    for key, a, b in _align(positions_a, positions_b):
        differences: list[str] = []
        if a is None:
            marker = "only_b"
        elif b is None:
            marker = "only_a"
        else:
            differences = [f for f in DIFF_FIELDS if a[f] != b[f]]
            marker = "different" if differences else "same"
        summary[marker] += 1
        rows.append(
            {
                "round": key[0],
                "step_order": key[1] if key[1] >= 0 else None,
                "loop_iteration": key[2],
                "occurrence": key[3],
                "marker": marker,
                "differences": differences,
                "a": a,
                "b": b,
            }
        )
    return {"a": session_a, "b": session_b, "rows": rows, "summary": summary}
