"""Batches: one action over the sessions a ``--where`` selector chose, run as a job.

``session cancel|resume|skip|retry --where …`` and ``auto --where …`` preview what they
select, then record a batch (flowcli_batches: the selector, the action and its options)
with one item per selected session (flowcli_batch_items: its outcome), and handle the
items one by one. A batch killed midway is continued by ``batch resume``, which skips
what is done. Each action is the engine's own (lifecycle.transition, debugging.skip_step
and retry_failed_step, the worker); this module adds the bookkeeping that makes a batch
handle each session exactly once:

- cancel, resume, skip write the session. The engine's function runs inside the item's
  transaction (its own ``write()`` becomes a savepoint there), so the action and the
  recorded outcome commit together: after any crash an item is either still open, its
  session untouched, or done with the action applied.
- retry runs a step, outside any transaction of ours. One transaction marks the item
  ``started`` and remembers the session's newest execution (``mark``); the retry
  follows; a last transaction records the outcome. A resumed batch finishes a started
  item instead of starting it again, reading what happened from the executions after
  the mark (see _continue_retry).
- auto marks each item ``started`` (starting a not_started session in the same
  transaction), drives the started sessions through the worker engine, and records each
  one's final status. Resuming drives those that have not ended.

Steps themselves are exactly-once by the engine (docs/engine.md): a step killed during
its network call is recorded as a failed attempt and runs again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from flowcli.db import session_store as store
from flowcli.db.connection import Database
from flowcli.db.log_queries import FAILURE_STATUSES
from flowcli.db.tables import batch_items_table, batches_table, flow_templates_table
from flowcli.engine.selector import Selector, compile_selector
from flowcli.errors import (
    BatchBusyError,
    NotFoundError,
    SessionBusyError,
    SessionStateError,
    UsageError,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

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
ENDED_STATUSES = ("finished", "failed", "cancelled", "terminated", "paused")
PREVIEW_ROWS = 10
PAGE = 200  # items read at a time; auto drives this many sessions per worker run
LEASE_S = 60.0
RENEW_EVERY_S = 10.0
MAX_DETAIL = 500

Event = dict[str, Any]


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


# --------------------------------------------------------------------------- the actions
class _InTransaction(Database):
    """The database seen from inside one open transaction: an engine function's own
    ``write()`` becomes a savepoint there, so its changes commit together with what the
    batch records about them, or not at all."""

    def __init__(self, db: Database, conn: Connection) -> None:
        super().__init__(db.target, db.busy_timeout)
        self._engine = db.engine
        self.schema_checked = True
        self._conn = conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        yield self._conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._conn.begin_nested():
            yield self._conn

    def dispose(self) -> None:
        """The connection belongs to the caller's transaction."""


def _apply_write_action(db: Database, action: str, session_id: int, reason: str | None) -> str:
    """One of the session-writing actions through the engine; returns the new status."""
    if action == "skip":
        from flowcli.engine.debugging import skip_step

        return str(skip_step(db, session_id, reason)["session"]["status"])
    from flowcli.engine.lifecycle import transition

    return str(transition(db, session_id, action)["status"])


WRITE_ACTIONS = ("cancel", "resume", "skip")


def _status(row: store.SessionRow) -> str:
    return row.status or "not_started"


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


class _Rollback(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a dry run's transaction so that nothing it did is kept."""

    def __init__(self, outcome: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.outcome = outcome


def dry_run(db: Database, plan: Preview, *, reason: str | None = None) -> list[dict[str, Any]]:
    """What the action would do to each selected session. Writing actions really run, each
    in a transaction that is rolled back; retry and auto only check the session's status."""
    from flowcli.engine.runner import check_runnable

    out: list[dict[str, Any]] = []
    for sid in plan.ids:
        if plan.action in WRITE_ACTIONS:
            try:
                with db.write() as conn:
                    before = _status(store.load_session(conn, sid))
                    try:
                        joined = _InTransaction(db, conn)
                        after = _apply_write_action(joined, plan.action, sid, reason)
                    except (SessionStateError, SessionBusyError, NotFoundError) as exc:
                        raise _Rollback({"before": before, "refused": str(exc)}) from None
                    raise _Rollback({"before": before, "after": after})
            except _Rollback as done:
                entry = done.outcome
            except NotFoundError as exc:
                entry = {"before": None, "refused": str(exc)}
        else:
            with db.read() as conn:
                try:
                    row = store.load_session(conn, sid)
                except NotFoundError as exc:
                    out.append({"id": sid, "before": None, "refused": str(exc)})
                    continue
            entry = {"before": _status(row)}
            try:
                if plan.action == "retry":
                    if row.status != "failed":
                        raise SessionStateError(
                            f"session {sid} is {_status(row)}, not failed; retry runs the "
                            "step of a failed session"
                        )
                    entry["after"] = "running"
                else:
                    check_runnable(row)
                    entry["after"] = "finished"
            except SessionStateError as exc:
                entry["refused"] = str(exc)
        out.append({"id": sid, **entry})
    return out


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


# --------------------------------------------------------------------------- running
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


def _owner() -> str:
    from flowcli.engine.runner import process_owner

    return process_owner()


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process named by an owner id (host:pid:…) runs; None if not knowable
    from here (another host)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Run:
    """One process working through one batch's open items."""

    def __init__(
        self,
        db: Database,
        batch: dict[str, Any],
        options: ResponderOptions | None,
        stop: threading.Event,
        emit: Callable[[Event], None],
    ) -> None:
        self.db = db
        self.batch = batch
        self.id = int(batch["id"])
        self.action = str(batch["action"])
        self.settings = BatchSettings.from_json(batch["arguments"])
        self.responder = self.settings.responder_options(options)
        self.selector: Selector = compile_selector(batch["selector"], now=batch["selected_at"])
        self.stop = stop
        self.emit = emit
        self.owner = _owner()
        self.handled = 0
        self._renewed = 0.0

    # --- the batch's own row ------------------------------------------------------
    def claim(self) -> None:
        now = store.utcnow()
        with self.db.write() as conn:
            row = _load_batch(conn, self.id, for_update=True)
            owner, until = row["owner"], row["lease_expires_at"]
            live = owner and until is not None and until > now and owner_alive(owner) is not False
            if live and owner != self.owner:
                raise BatchBusyError(
                    f"batch {self.id} is being run by {owner} (its claim holds until "
                    f"{until:%Y-%m-%d %H:%M:%S} UTC); wait for it, or stop that process"
                )
            self._write_lease(conn, now, status="running")
            self.handled = int(
                conn.execute(
                    select(func.count())
                    .select_from(items_t)
                    .where(items_t.c.batch_id == self.id, items_t.c.outcome.not_in(OPEN_OUTCOMES))
                ).scalar_one()
            )

    def _write_lease(self, conn: Connection, now: datetime, **values: Any) -> None:
        conn.execute(
            update(batches_t)
            .where(batches_t.c.id == self.id)
            .values(
                owner=self.owner,
                lease_expires_at=now + timedelta(seconds=LEASE_S),
                updated_at=now,
                **values,
            )
        )
        self._renewed = time.monotonic()

    def renew(self, conn: Connection | None = None) -> None:
        if conn is not None:
            self._write_lease(conn, store.utcnow())
        elif time.monotonic() - self._renewed > RENEW_EVERY_S:
            with self.db.write() as own:
                self._write_lease(own, store.utcnow())

    def release(self) -> str:
        now = store.utcnow()
        with self.db.write() as conn:
            still_open = conn.execute(
                select(func.count())
                .select_from(items_t)
                .where(items_t.c.batch_id == self.id, items_t.c.outcome.in_(OPEN_OUTCOMES))
            ).scalar_one()
            status = "incomplete" if still_open else "done"
            conn.execute(
                update(batches_t)
                .where(batches_t.c.id == self.id, batches_t.c.owner == self.owner)
                .values(
                    status=status,
                    owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                    ended_at=None if still_open else now,
                )
            )
        return status

    # --- items ------------------------------------------------------------------------
    def open_items(self) -> Iterator[list[dict[str, Any]]]:
        """Open items in position order, a page at a time."""
        after = 0
        while not self.stop.is_set():
            with self.db.read() as conn:
                page = [
                    dict(r)
                    for r in conn.execute(
                        select(items_t)
                        .where(
                            items_t.c.batch_id == self.id,
                            items_t.c.position > after,
                            items_t.c.outcome.in_(OPEN_OUTCOMES),
                        )
                        .order_by(items_t.c.position)
                        .limit(PAGE)
                    ).mappings()
                ]
            if not page:
                return
            yield page
            after = page[-1]["position"]

    def record(self, conn: Connection, item: dict[str, Any], outcome: str, **values: Any) -> None:
        now = store.utcnow()
        if "detail" in values and values["detail"] is not None:
            values["detail"] = _clip(values["detail"])
        if outcome not in OPEN_OUTCOMES:
            values.setdefault("finished_at", now)
        conn.execute(
            update(items_t).where(items_t.c.id == item["id"]).values(outcome=outcome, **values)
        )
        self.renew(conn)
        item.update(outcome=outcome, **values)

    def announce(self, item: dict[str, Any]) -> None:
        if item["outcome"] not in OPEN_OUTCOMES:
            self.handled += 1
        self.emit(
            {
                "event": "item",
                "batch": self.id,
                "session": item["session_id"],
                "outcome": item["outcome"],
                "status_before": item.get("status_before"),
                "status_after": item.get("status_after"),
                "detail": item.get("detail"),
                "handled": self.handled,
            }
        )

    def lock_matching(self, conn: Connection, session_id: int) -> bool:
        """Lock the session's row (PostgreSQL; SQLite's write lock is already held), then
        check it still matches: nothing can change it between the check and the action."""
        if conn.dialect.name != "sqlite":
            s = store.sessions_t
            conn.execute(select(s.c.id).where(s.c.id == session_id).with_for_update()).first()
        return self.selector.matches(conn, session_id)

    def locked_item(self, conn: Connection, item_id: int) -> dict[str, Any]:
        stmt = select(items_t).where(items_t.c.id == item_id)
        if conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).mappings().first()
        assert row is not None  # items are never deleted while their batch exists
        return dict(row)

    # --- cancel, resume, skip: the action and its outcome in one transaction ---------------
    def write_item(self, item: dict[str, Any]) -> None:
        with self.db.write() as conn:
            current = self.locked_item(conn, item["id"])
            if current["outcome"] not in ("pending", "busy"):
                item.update(current)  # another process handled it meanwhile
                return
            if not self.lock_matching(conn, item["session_id"]):
                self.record(conn, item, "unmatched", detail="no longer matches the selector")
                return
            before = _status(store.load_session(conn, item["session_id"]))
            try:
                after = _apply_write_action(
                    _InTransaction(self.db, conn),
                    self.action,
                    item["session_id"],
                    self.settings.reason,
                )
            except SessionBusyError as exc:
                self.record(conn, item, "busy", status_before=before, detail=str(exc))
            except (SessionStateError, NotFoundError) as exc:
                self.record(conn, item, "refused", status_before=before, detail=str(exc))
            else:
                self.record(
                    conn, item, "done", status_before=before, status_after=after, detail=None
                )

    # --- retry: marked, run, recorded ------------------------------------------------
    def retry_item(self, item: dict[str, Any]) -> None:
        if item["outcome"] != "started":
            with self.db.write() as conn:
                current = self.locked_item(conn, item["id"])
                if current["outcome"] not in ("pending", "busy"):
                    item.update(current)
                    return
                sid = item["session_id"]
                if not self.lock_matching(conn, sid):
                    self.record(conn, item, "unmatched", detail="no longer matches the selector")
                    return
                row = store.load_session(conn, sid)
                if row.status != "failed":
                    self.record(
                        conn,
                        item,
                        "refused",
                        status_before=_status(row),
                        detail=f"session {sid} is {_status(row)}, not failed",
                    )
                    return
                mark = store.next_execution_order(conn, sid) - 1
                self.record(
                    conn,
                    item,
                    "started",
                    status_before="failed",
                    mark=mark,
                    started_at=store.utcnow(),
                )
        self._continue_retry(item)

    def _continue_retry(self, item: dict[str, Any]) -> None:
        """Finish a started retry: find out from the executions after the mark whether it
        ran, and run only what has not."""
        from flowcli.engine.debugging import retry_failed_step
        from flowcli.engine.runner import run_next_step

        sid, mark = item["session_id"], int(item["mark"] or 0)
        with self.db.read() as conn:
            row = store.load_session(conn, sid)
            ran, failed = _executions_after(conn, sid, mark)
        status = _status(row)
        result = None
        try:
            if ran is None and status == "failed" and failed is None:
                # the resume never committed (or never ran): the retry starts from scratch
                result = retry_failed_step(
                    self.db,
                    sid,
                    self.responder,
                    retries=self.settings.retries,
                    backoff=self.settings.backoff,
                )
            elif ran is None and status == "running":
                # resumed, but the step did not conclude (killed, or interrupted mid-call)
                self.release_dead_claims([sid])
                result = run_next_step(
                    self.db,
                    sid,
                    self.responder,
                    retries=self.settings.retries,
                    backoff=self.settings.backoff,
                )
            elif ran is None and failed is None:
                with self.db.write() as conn:
                    self.record(
                        conn,
                        item,
                        "refused",
                        status_after=status,
                        detail=f"session {sid} became {status} before its step was retried",
                    )
                return
        except SessionBusyError as exc:
            with self.db.write() as conn:
                self.record(conn, item, "started", detail=str(exc))
            return
        except (SessionStateError, NotFoundError) as exc:
            with self.db.write() as conn:
                self.record(conn, item, "refused", detail=str(exc))
            return
        with self.db.read() as conn:
            row = store.load_session(conn, sid)
            ran, failed = _executions_after(conn, sid, mark)
        if result is not None and result.failed:
            detail = f"step failed again: {result.error}"
        elif ran is not None:
            detail = f"execution #{ran['execution_order']} {ran['status']}"
        elif failed is not None:
            detail = f"step failed again: {failed['error_message'] or row.error_reason or ''}"
        else:
            detail = "the step did not run"
        with self.db.write() as conn:
            self.record(conn, item, "done", status_after=_status(row), detail=detail)

    # --- auto: started, driven by the worker engine, recorded ---------------------------
    def auto_page(self, page: list[dict[str, Any]]) -> None:
        from flowcli.engine.lifecycle import transition
        from flowcli.engine.runner import check_runnable

        for item in page:
            if self.stop.is_set():
                return
            if item["outcome"] == "started":
                continue
            with self.db.write() as conn:
                current = self.locked_item(conn, item["id"])
                if current["outcome"] not in ("pending", "busy"):
                    item.update(current)
                    continue
                sid = item["session_id"]
                if not self.lock_matching(conn, sid):
                    self.record(conn, item, "unmatched", detail="no longer matches the selector")
                    self.announce(item)
                    continue
                row = store.load_session(conn, sid)
                try:
                    check_runnable(row)
                    if _status(row) == "not_started":
                        transition(_InTransaction(self.db, conn), sid, "start")
                except SessionStateError as exc:
                    self.record(conn, item, "refused", status_before=_status(row), detail=str(exc))
                    self.announce(item)
                    continue
                self.record(
                    conn, item, "started", status_before=_status(row), started_at=store.utcnow()
                )
        started = [i for i in page if i["outcome"] == "started"]
        if started and not self.stop.is_set():
            self.release_dead_claims([i["session_id"] for i in started])
            self._drive([i["session_id"] for i in started])
        for item in started:
            with self.db.write() as conn:
                row = store.load_session(conn, item["session_id"])
                status = _status(row)
                if status in ENDED_STATUSES:
                    detail = row.error_reason if status == "failed" else None
                    self.record(conn, item, "done", status_after=status, detail=detail)
                    self.announce(item)

    def _drive(self, session_ids: list[int]) -> None:
        from flowcli.engine.worker import WorkerOptions, run_worker

        options = WorkerOptions(
            concurrency=max(1, self.settings.concurrency),
            sessions=tuple(session_ids),
            poll=0.05,
            max_idle=0.0,
            retries=self.settings.retries,
            backoff=self.settings.backoff,
            responder=self.responder,
        )

        def on_event(event: Event) -> None:
            if event.get("event") == "step":
                self.emit({**event, "batch": self.id})
            with contextlib.suppress(Exception):
                self.renew()

        # run_worker sets the event it is given when it ends; ours must only say "stop"
        worker_stop = threading.Event()
        finished = threading.Event()

        def relay() -> None:
            while not finished.is_set():
                if self.stop.wait(0.1):
                    worker_stop.set()
                    return

        threading.Thread(target=relay, name="flowcli-batch-stop", daemon=True).start()
        try:
            summary = run_worker(self.db, options, emit=on_event, stop=worker_stop)
        finally:
            finished.set()
        if summary.errors:
            from flowcli.errors import FlowcliError

            raise FlowcliError(f"batch {self.id}: {summary.errors[0]}")

    def release_dead_claims(self, session_ids: Sequence[int]) -> None:
        """End the step claims that a process on this host held when it died (a killed
        batch's, say), so resuming need not wait for their leases to run out. The engine
        then treats the claimed step as it treats any expired claim: a failed attempt,
        run again. Claims of live processes, or of other hosts, are left to their leases."""
        s = store.sessions_t
        now = store.utcnow()
        with self.db.write() as conn:
            held = conn.execute(
                select(s.c.id, s.c.lease_owner).where(
                    s.c.id.in_(list(session_ids)),
                    s.c.lease_owner.is_not(None),
                    s.c.lease_expires_at > now,
                )
            ).all()
            for sid, owner in held:
                if owner_alive(owner) is False:
                    conn.execute(
                        update(s)
                        .where(s.c.id == sid, s.c.lease_owner == owner)
                        .values(lease_expires_at=now)
                    )

    # --- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        for page in self.open_items():
            if self.action == "auto":
                self.auto_page(page)
                continue
            for item in page:
                if self.stop.is_set():
                    return
                if self.action == "retry":
                    self.retry_item(item)
                else:
                    self.write_item(item)
                self.announce(item)


def _executions_after(
    conn: Connection, session_id: int, mark: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The newest completed/skipped and the newest failed execution after ``mark``."""
    logs = store.logs_t

    def newest(statuses: Sequence[str]) -> dict[str, Any] | None:
        row = (
            conn.execute(
                select(logs.c.execution_order, logs.c.status, logs.c.error_message)
                .where(
                    logs.c.session_id == session_id,
                    logs.c.execution_order > mark,
                    logs.c.status.in_(list(statuses)),
                )
                .order_by(logs.c.execution_order.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    return newest(("completed", "skipped")), newest(FAILURE_STATUSES)


def _load_batch(conn: Connection, batch_id: int, *, for_update: bool = False) -> dict[str, Any]:
    stmt = select(batches_t).where(batches_t.c.id == batch_id)
    if for_update and conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFoundError(f"batch {batch_id} does not exist; see `flowcli batch list`")
    return dict(row)


def run_batch(
    db: Database,
    batch_id: int,
    *,
    options: ResponderOptions | None = None,
    stop: threading.Event | None = None,
    emit: Callable[[Event], None] = lambda event: None,
) -> BatchReport:
    """Handle every open item of the batch (all of a new one; the rest of a resumed one)."""
    from flowcli.db.schema import require_schema

    require_schema(db)
    t0 = time.perf_counter()
    stop = stop or threading.Event()
    with db.read() as conn:
        batch = _load_batch(conn, batch_id)
    run = _Run(db, batch, options, stop, emit)
    run.claim()
    try:
        run.run()
    finally:
        status = run.release()
    report = batch_report(db, batch_id)
    report.status = status
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    report.stopped = stop.is_set()
    return report


def batch_report(db: Database, batch_id: int) -> BatchReport:
    with db.read() as conn:
        batch = _load_batch(conn, batch_id)
        outcomes, after = _counts(conn, [batch_id])
    return BatchReport(
        id=batch_id,
        action=batch["action"],
        status=batch["status"],
        total=batch["total"],
        outcomes=outcomes.get(batch_id, {}),
        statuses_after=after.get(batch_id, {}),
        elapsed_s=0.0,
    )


# --------------------------------------------------------------------------- reading
def _counts(
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
        outcomes, _after = _counts(conn, [b["id"] for b in batches])
    return [_describe(b, outcomes.get(b["id"], {})) for b in batches]


def show_batch(db: Database, batch_id: int, *, items: int | None = None) -> dict[str, Any]:
    """One batch: its progress, and its items in order (the first ``items`` of them)."""
    with db.read() as conn:
        batch = _load_batch(conn, batch_id)
        outcomes, after = _counts(conn, [batch_id])
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
