"""Running a batch: each selected session handled exactly once, never half.

Each action is the engine's own (lifecycle.transition, debugging.skip_step and
retry_failed_step, the worker); this module adds the bookkeeping that makes a batch
(flowcli.engine.batch) handle each session exactly once, and a killed one resumable:

- cancel, resume, skip write the session. The engine's function runs inside the item's
  transaction (its own ``write()`` becomes a savepoint there), so the action and the
  recorded outcome commit together: after any crash an item is either still open, its
  session untouched, or done with the action applied.
- retry runs a step, outside any transaction of ours. One transaction marks the item
  ``started`` and remembers the session's newest execution (``mark``); the retry
  follows; a last transaction records the outcome. A resumed batch finishes a started
  item instead of starting it again, reading what happened from the executions after
  the mark (see _Run.continue_retry).
- auto marks each item ``started`` (starting a not_started session in the same
  transaction), drives the started sessions through the worker engine, and records each
  one's final status. Resuming drives those that have not ended.

Steps themselves are exactly-once by the engine (docs/engine.md): a step killed during
its network call is recorded as a failed attempt and runs again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from flowcli.db import session_store as store
from flowcli.db.connection import Database
from flowcli.db.log_queries import FAILURE_STATUSES
from flowcli.engine.batch import (
    OPEN_OUTCOMES,
    BatchReport,
    BatchSettings,
    Preview,
    batch_report,
    batches_t,
    items_t,
    load_batch,
    owner_alive,
)
from flowcli.engine.runner import process_owner
from flowcli.engine.selector import Selector, compile_selector
from flowcli.errors import BatchBusyError, NotFoundError, SessionBusyError, SessionStateError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from flowcli.engine.responders import ResponderOptions

# A session in one of these has stopped running: an auto item is then done.
ENDED_STATUSES = ("finished", "failed", "cancelled", "terminated", "paused")
PAGE = 200  # items read at a time; auto drives this many sessions per worker run
LEASE_S = 60.0
RENEW_EVERY_S = 10.0
MAX_DETAIL = 500

Event = dict[str, Any]


# --------------------------------------------------------------------------- the actions
class _InTransaction(Database):
    """The database seen from inside one open transaction: an engine function's own
    ``write()`` becomes a savepoint there, so its changes commit together with what the
    batch records about them, or not at all."""

    def __init__(self, db: Database, conn: Connection) -> None:
        super().__init__(db.target, db.busy_timeout)
        self._engine = db.engine
        self.schema_checked = True
        self.bare_driver = False  # every read inside the caller's transaction
        self._immutable = db._immutable
        self._conn = conn
        # Known already (run_batch reads it first): read here it would open a bare
        # connection of its own inside this transaction, which failed ("disk I/O error").
        self._owner = db.owner

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
                    entry["after"] = "(runs to its end)"
            except SessionStateError as exc:
                entry["refused"] = str(exc)
        out.append({"id": sid, **entry})
    return out


# --------------------------------------------------------------------------- running
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
        self.owner = process_owner()
        self.handled = 0
        self._renewed = 0.0

    # --- the batch's own row ------------------------------------------------------
    def claim(self) -> None:
        now = store.utcnow()
        with self.db.write() as conn:
            row = load_batch(conn, self.id, for_update=True)
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
                mark = store.next_execution_order(conn, row) - 1
                self.record(
                    conn,
                    item,
                    "started",
                    status_before="failed",
                    mark=mark,
                    started_at=store.utcnow(),
                )
        self.continue_retry(item)

    def continue_retry(self, item: dict[str, Any]) -> None:
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
    # Read once here, before any item's write transaction: the actions ask for it, and
    # a first read on a fresh connection inside another connection's write transaction
    # of this process failed ("disk I/O error").
    _ = db.owner
    t0 = time.perf_counter()
    stop = stop or threading.Event()
    with db.read() as conn:
        batch = load_batch(conn, batch_id)
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
