"""Batches: one action over the sessions a ``--where`` selector chose, as a job.

``session cancel|resume|skip|retry --where …`` and ``auto --where …`` preview what they
select, then record a batch (flowcli_batches: the selector, the action and its options)
with one item per selected session (flowcli_batch_items: its outcome). This module owns
what a batch is: its settings, the preview, creating it, and reading it back
(``batch list``, ``batch show``). Running one, exactly once per session, is
flowcli.engine.batch_run's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select

from flowcli.db import session_store as store
from flowcli.db.leases import owner_alive
from flowcli.db.tables import batch_items_table, batches_table, flow_templates_table
from flowcli.engine.selector import compile_selector
from flowcli.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from flowcli.db.connection import Database
    from flowcli.engine.responders import ResponderOptions

batches_t = batches_table
items_t = batch_items_table

ACTIONS = ("cancel", "resume", "skip", "retry", "auto")
# What became of a session: pending (not yet handled), started (retry/auto under way),
# done (the action was applied), refused (the engine refused it: the session's status
# does not allow it), unmatched (it no longer matched the selector when its turn came),
# busy (another process was running one of its steps; tried again on resume).
OUTCOMES = ("pending", "started", "done", "refused", "unmatched", "busy")
OPEN_OUTCOMES = ("pending", "started", "busy")
BATCH_STATUSES = ("running", "done", "incomplete")
PREVIEW_ROWS = 10


# --------------------------------------------------------------------------- settings
@dataclass
class BatchSettings:
    """An action's options, stored with the batch (as JSON) so that resume uses them."""

    reason: str | None = None
    limit: int | None = None
    concurrency: int = 1
    retries: int = 2
    backoff: float = 0.5
    responder: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def with_responder(cls, options: ResponderOptions | None, **values: Any) -> BatchSettings:
        stored = {}
        if options is not None:
            # never the API key: it comes from the option or the environment each time
            stored = {k: v for k, v in asdict(options).items() if k != "api_key" and v is not None}
        return cls(responder=stored, **values)

    def responder_options(self, override: ResponderOptions | None = None) -> ResponderOptions:
        from flowcli.engine.responders import ResponderOptions

        values = dict(self.responder)
        if override is not None:
            values.update({k: v for k, v in asdict(override).items() if v is not None})
        known = set(ResponderOptions.__dataclass_fields__)
        return ResponderOptions(**{k: v for k, v in values.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | None) -> BatchSettings:
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            return cls()
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- preview
@dataclass
class Preview:
    """What a batch would act on: computed before asking, shown to the user."""

    action: str
    where: str
    selected_at: datetime
    matched: int  # sessions matching the selector
    ids: list[int]  # those the batch takes (the first --limit of them, by id)
    first: list[dict[str, Any]]  # the first few of those, to show
    evaluated: str  # sql, sql+sandbox or sandbox


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise UsageError(f"unknown batch action {action!r}; choose from {', '.join(ACTIONS)}")


def preview(
    db: Database, action: str, where: str, *, limit: int | None = None, show: int = PREVIEW_ROWS
) -> Preview:
    """Select the sessions ``where`` matches now; nothing is written."""
    _check_action(action)
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    selector = compile_selector(where)
    with db.read() as conn:
        ids = selector.ids(conn, limit=limit)
        matched = len(ids) if limit is None or len(ids) < limit else selector.count(conn)
        first = _session_summaries(conn, ids[:show])
        evaluated = selector.evaluated_in(conn.dialect.name)
    return Preview(action, where, selector.now, matched, ids, first, evaluated)


def _session_summaries(conn: Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    s, f = store.sessions_t, flow_templates_table
    if not ids:
        return []
    rows = conn.execute(
        select(
            s.c.id,
            s.c.status,
            s.c.flow_template_id,
            f.c.name.label("flow"),
            s.c.topic,
            s.c.error_reason,
            s.c.updated_at,
        )
        .select_from(s.outerjoin(f, f.c.id == s.c.flow_template_id))
        .where(s.c.id.in_(list(ids)))
        .order_by(s.c.id)
    ).mappings()
    return [dict(r) for r in rows]


# --------------------------------------------------------------------------- creating
def create_batch(db: Database, plan: Preview, settings: BatchSettings) -> int:
    """Record a batch of ``plan``'s sessions, every item pending; returns its id."""
    _check_action(plan.action)
    if not plan.ids:
        raise UsageError("no sessions match: there is nothing to do")
    now = store.utcnow()
    with db.write() as conn:
        batch_id = int(
            conn.execute(
                insert(batches_t).values(
                    action=plan.action,
                    selector=plan.where,
                    selected_at=plan.selected_at,
                    arguments=settings.to_json(),
                    status="running",
                    total=len(plan.ids),
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        for start in range(0, len(plan.ids), 1000):
            conn.execute(
                insert(items_t),
                [
                    {
                        "batch_id": batch_id,
                        "position": start + offset + 1,
                        "session_id": sid,
                        "outcome": "pending",
                    }
                    for offset, sid in enumerate(plan.ids[start : start + 1000])
                ],
            )
    return batch_id


# --------------------------------------------------------------------------- reading
@dataclass
class BatchReport:
    id: int
    action: str
    status: str
    total: int
    outcomes: dict[str, int]
    statuses_after: dict[str, int]
    elapsed_s: float
    stopped: bool = False

    @property
    def open(self) -> int:
        return sum(self.outcomes.get(o, 0) for o in OPEN_OUTCOMES)


def load_batch(conn: Connection, batch_id: int, *, for_update: bool = False) -> dict[str, Any]:
    stmt = select(batches_t).where(batches_t.c.id == batch_id)
    if for_update and conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFoundError(f"batch {batch_id} does not exist; see `flowcli batch list`")
    return dict(row)


def batch_report(db: Database, batch_id: int) -> BatchReport:
    with db.read() as conn:
        batch = load_batch(conn, batch_id)
        outcomes, after = outcome_counts(conn, [batch_id])
    return BatchReport(
        id=batch_id,
        action=batch["action"],
        status=batch["status"],
        total=batch["total"],
        outcomes=outcomes.get(batch_id, {}),
        statuses_after=after.get(batch_id, {}),
        elapsed_s=0.0,
    )


def outcome_counts(
    conn: Connection, batch_ids: Sequence[int]
) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    outcomes: dict[int, dict[str, int]] = {}
    after: dict[int, dict[str, int]] = {}
    if not batch_ids:
        return outcomes, after
    rows = conn.execute(
        select(items_t.c.batch_id, items_t.c.outcome, items_t.c.status_after, func.count())
        .where(items_t.c.batch_id.in_(list(batch_ids)))
        .group_by(items_t.c.batch_id, items_t.c.outcome, items_t.c.status_after)
    )
    for batch_id, outcome, status_after, n in rows:
        per = outcomes.setdefault(batch_id, {})
        per[outcome] = per.get(outcome, 0) + n
        if status_after is not None:
            per_after = after.setdefault(batch_id, {})
            per_after[status_after] = per_after.get(status_after, 0) + n
    return outcomes, after


def _describe(batch: dict[str, Any], outcomes: dict[str, int]) -> dict[str, Any]:
    state = batch["status"]
    if state == "running":
        alive = owner_alive(batch["owner"])
        now = store.utcnow()
        expired = batch["lease_expires_at"] is None or batch["lease_expires_at"] < now
        if alive is False or (alive is None and expired):
            state = "stalled"  # its process is gone: `batch resume` continues it
    handled = sum(n for o, n in outcomes.items() if o not in OPEN_OUTCOMES)
    return {
        "id": batch["id"],
        "action": batch["action"],
        "selector": batch["selector"],
        "status": batch["status"],
        "state": state,
        "total": batch["total"],
        "handled": handled,
        "outcomes": {o: outcomes.get(o, 0) for o in OUTCOMES},
        "arguments": BatchSettings.from_json(batch["arguments"]).__dict__,
        "selected_at": batch["selected_at"],
        "created_at": batch["created_at"],
        "updated_at": batch["updated_at"],
        "ended_at": batch["ended_at"],
        "owner": batch["owner"],
    }


def list_batches(db: Database, *, limit: int | None = 50) -> list[dict[str, Any]]:
    """The newest batches first, each with its progress."""
    with db.read() as conn:
        stmt = select(batches_t).order_by(batches_t.c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        batches = [dict(r) for r in conn.execute(stmt).mappings()]
        outcomes, _after = outcome_counts(conn, [b["id"] for b in batches])
    return [_describe(b, outcomes.get(b["id"], {})) for b in batches]


def show_batch(db: Database, batch_id: int, *, items: int | None = None) -> dict[str, Any]:
    """One batch: its progress, and its items in order (the first ``items`` of them)."""
    with db.read() as conn:
        batch = load_batch(conn, batch_id)
        outcomes, after = outcome_counts(conn, [batch_id])
        stmt = (
            select(
                items_t.c.position,
                items_t.c.session_id,
                items_t.c.outcome,
                items_t.c.status_before,
                items_t.c.status_after,
                items_t.c.detail,
                items_t.c.started_at,
                items_t.c.finished_at,
            )
            .where(items_t.c.batch_id == batch_id)
            .order_by(items_t.c.position)
        )
        if items is not None:
            stmt = stmt.limit(items)
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    data = _describe(batch, outcomes.get(batch_id, {}))
    data["statuses_after"] = after.get(batch_id, {})
    data["items"] = rows
    return data
