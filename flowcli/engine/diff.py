"""``session diff``: two sessions' executions aligned by position (round, step, loop
iteration), with what differs at each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowcli.db import session_store as store
from flowcli.db.log_queries import (
    FAILURE_STATUSES,
    IN_FLIGHT_STATUSES,
    iter_logs,
    message_contents,
    step_info,
)
from flowcli.engine.recording import logged_message_id
from flowcli.errors import UsageError

if TYPE_CHECKING:
    from flowcli.db.connection import Database


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
                "message_id": logged_message_id(log.get("result_data")),
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
