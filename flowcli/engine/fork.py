"""``session fork``: a new session whose state is the source's right after one of
its executions. The copies (session roles, messages, log rows through
flowcli.engine.recording) get new ids and every reference among them is remapped; the
fork's position and loop counters are rebuilt by replaying the planner over the copied
executions (flowcli.engine.replay), exactly as the engine reached them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from flowcli.db import session_store as store
from flowcli.db.engine_state import EngineState
from flowcli.db.json_text import loads_json
from flowcli.db.log_queries import (
    IN_FLIGHT_STATUSES,
)
from flowcli.db.step_tx import StepTx
from flowcli.engine import recording
from flowcli.engine.conventions import conventions_for
from flowcli.engine.recording import logged_message_id
from flowcli.engine.replay import Replay
from flowcli.errors import SessionStateError, UsageError
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.db.connection import Database


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
        mid = logged_message_id(raw)
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
        # Moved as every session is (version-checked), from the row just inserted.
        recording.move_session(copier, store.load_session(conn, new_id), position)
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
