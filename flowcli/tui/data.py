"""What the TUI's screens read on each refresh, as plain data, off the UI thread.

Each function is one or a few short read transactions through the same queries the
CLI uses (``logs``, ``explain``, ``session transcript``, ``log``); nothing here writes.
A live view reads only what is new since its last refresh: log rows after the last
settled execution order and messages after the last message id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flowcli.tui import DEFAULT_WINDOW

if TYPE_CHECKING:
    from flowcli.db.connection import Database
    from flowcli.flows.snapshot import FlowSnapshot


@dataclass
class SessionsData:
    sessions: list[dict[str, Any]]
    flows: list[dict[str, Any]]


def read_sessions(db: Database, *, statuses: list[str] | None, flow_id: int | None) -> SessionsData:
    from flowcli.db.session_overview import flows_with_sessions, session_overview

    with db.read() as conn:
        return SessionsData(
            sessions=session_overview(conn, statuses=statuses, flow_id=flow_id),
            flows=flows_with_sessions(conn),
        )


@dataclass
class SessionHead:
    """A session's row as the header, the steps list and the run controls need it."""

    id: int
    status: str
    flow_name: str | None
    topic: str
    round: int | None
    executed_steps: int
    current_step_id: int | None
    current_order: int | None
    error_reason: str | None
    lease_owner: str | None
    variables: dict[str, Any]
    steps: list[dict[str, Any]]
    forked_from: tuple[int, int | None] | None = None  # (session id, log id)
    # Changes whenever anything about the session changes (for re-reading explain).
    change_key: tuple[Any, ...] = ()

    @property
    def next_order(self) -> int | None:
        """The order of the step that runs next (the first one before the session starts)."""
        if self.status == "not_started" or self.current_step_id is None:
            return min((s["order"] for s in self.steps), default=None)
        return self.current_order


@dataclass
class SessionUpdate:
    head: SessionHead
    logs: list[dict[str, Any]] = field(default_factory=list)
    settled_order: int = 0
    in_flight: dict[str, Any] | None = None
    reset: bool = False  # the log rows replace what was shown (first read, or a big gap)
    messages: list[dict[str, Any]] = field(default_factory=list)
    messages_reset: bool = False
    more_messages_before: bool = False
    explain: dict[str, Any] | None = None


@lru_cache(maxsize=16)
def _snapshot(raw: str | None) -> FlowSnapshot:
    from flowcli.flows.snapshot import parse_snapshot

    return parse_snapshot(raw)


def _steps(snapshot: FlowSnapshot) -> list[dict[str, Any]]:
    return [
        {
            "id": s.id,
            "order": s.order,
            "speaker": s.speaker,
            "target": s.target,
            "task_type": s.task_type,
            "condition": s.condition,
            "loop": (
                {"to_order": s.loop.to_order, "max_loops": s.loop.max_loops} if s.loop else None
            ),
        }
        for s in snapshot.steps
    ]


def read_session(
    db: Database,
    session_id: int,
    *,
    after_order: int | None,
    after_message_id: int | None,
    known_key: tuple[Any, ...] | None,
    window: int = DEFAULT_WINDOW,
) -> SessionUpdate:
    """The session's head, the log rows settled after ``after_order`` (the newest
    ``window`` when None), the messages after ``after_message_id``, and ``explain``
    when the session changed since ``known_key``."""
    from sqlalchemy import select

    from flowcli.db import session_store as store
    from flowcli.db.log_queries import (
        IN_FLIGHT_STATUSES,
        LogFilter,
        iter_logs,
        log_at,
        logs_after,
        settled_order,
    )
    from flowcli.db.tables import sessions_table
    from flowcli.engine.explain import explain_next
    from flowcli.engine.transcript import session_transcript
    from flowcli.errors import FlowcliError

    with db.read() as conn:
        row = store.load_session(conn, session_id)
        flow_name = None
        steps: list[dict[str, Any]] = []
        current_order = None
        try:
            snapshot = _snapshot(row.flow_snapshot)
            flow_name = snapshot.data.get("name")
            steps = _steps(snapshot)
            if row.current_step_id is not None and row.current_step_id in snapshot.by_id:
                current_order = snapshot.by_id[row.current_step_id].order
        except FlowcliError:
            pass  # a snapshot the engine cannot read: explain says so, the log still shows
        lineage = conn.execute(
            select(
                sessions_table.c.forked_from_session_id, sessions_table.c.forked_from_log_id
            ).where(sessions_table.c.id == session_id)
        ).first()
        settled = settled_order(conn, session_id)
        reset = after_order is None
        if not reset:
            new = logs_after(conn, session_id, after_order or 0, limit=window)
            if len(new) >= window or settled < (after_order or 0):
                # Far behind (or the history shrank): show the newest window afresh.
                reset = True
        if reset:
            new = list(iter_logs(conn, session_id, LogFilter(last=window, until_order=settled)))
        tail = log_at(conn, session_id, settled + 1)
        in_flight = tail if tail is not None and tail["status"] in IN_FLIGHT_STATUSES else None
        head = SessionHead(
            id=row.id,
            status=row.status or "not_started",
            flow_name=flow_name,
            topic=row.topic,
            round=row.current_round,
            executed_steps=row.executed_steps_count or 0,
            current_step_id=row.current_step_id,
            current_order=current_order,
            error_reason=row.error_reason,
            lease_owner=row.lease_owner,
            variables=row.vars(),
            steps=steps,
            forked_from=(lineage[0], lineage[1]) if lineage and lineage[0] else None,
            change_key=(
                row.version,
                row.status,
                row.current_step_id,
                row.current_round,
                row.executed_steps_count,
                settled,
                in_flight["id"] if in_flight else None,
            ),
        )
    # The newest execution order shown; the next refresh reads what lands after it.
    shown_up_to = settled
    if not reset:
        shown_up_to = new[-1]["execution_order"] if new else (after_order or 0)
    update = SessionUpdate(
        head=head, logs=new, settled_order=shown_up_to, in_flight=in_flight, reset=reset
    )
    if after_message_id is None:
        update.messages = session_transcript(db, session_id, last=window)
        update.messages_reset = True
        update.more_messages_before = len(update.messages) >= window
    elif known_key != head.change_key:
        update.messages = session_transcript(db, session_id, after_id=after_message_id)
    if known_key != head.change_key:
        try:
            update.explain = explain_next(db, session_id)
        except FlowcliError as exc:
            # A session whose snapshot cannot be read still shows its log and dialogue.
            update.explain = {"error": str(exc)}
    return update


def read_log_detail(db: Database, log_id: int) -> dict[str, Any]:
    from flowcli.db.log_queries import load_log_detail

    return load_log_detail(db, log_id)


def read_diff(db: Database, session_a: int, session_b: int) -> dict[str, Any]:
    from flowcli.engine.debugging import diff_sessions

    return diff_sessions(db, session_a, session_b)
