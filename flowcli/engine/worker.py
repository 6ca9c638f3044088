"""`flowcli worker`: processes (and threads) that drain runnable sessions together.

Each worker thread claims one running session at a time (a lease on the session row,
taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, under SQLite's write lock
elsewhere), runs up to ``batch`` of its steps while renewing the lease, then releases
it and claims the next, least recently run session. Exactly-once per step does not rest
on the lease: every step is its own transaction that locks the session row and checks
its version (docs/engine.md). The lease only spreads the work and lets a crashed
worker's sessions be picked up once it expires; a step it left half-done (a claimed
network call) is recovered as a failed attempt and runs again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flowcli.db.connection import Database
from flowcli.db.engine_state import EngineState
from flowcli.db.failures import translated
from flowcli.db.session_store import utcnow
from flowcli.db.step_tx import StepTx
from flowcli.engine.responders import ResponderOptions
from flowcli.engine.runner import (
    DEFAULT_RETRIES,
    SessionRunner,
    StepResult,
    process_owner,
    recover_abandoned,
)
from flowcli.errors import FlowcliError, SessionBusyError, SessionStateError

Event = dict[str, Any]


@dataclass
class WorkerOptions:
    concurrency: int = 1
    sessions: Sequence[int] = ()
    poll: float = 1.0
    max_idle: float | None = None
    lease: float = 30.0
    batch: int = 50
    retries: int = DEFAULT_RETRIES
    backoff: float = 0.5
    responder: ResponderOptions = field(default_factory=ResponderOptions)


@dataclass
class WorkerSummary:
    owner: str
    steps: int = 0
    failed_attempts: int = 0
    sessions_finished: list[int] = field(default_factory=list)
    sessions_failed: list[int] = field(default_factory=list)
    claims: int = 0
    errors: list[str] = field(default_factory=list)
    stop_reason: str = ""
    elapsed_s: float = 0.0


class _Lane:
    """One worker thread: its own connection, its own owner id (host:pid:random/lane)."""

    def __init__(
        self,
        db: Database,
        options: WorkerOptions,
        owner: str,
        emit: Callable[[Event], None],
        stop: threading.Event,
        summary: WorkerSummary,
        lock: threading.Lock,
    ) -> None:
        self.db = db
        self.options = options
        self.owner = owner
        self.emit = emit
        self.stop = stop
        self.summary = summary
        self.lock = lock
        self._raw: Any = None
        self._tx: StepTx | None = None

    def _claim_tx(self) -> StepTx:
        if self._tx is None:
            self._raw = self.db.engine.raw_connection()
            self._tx = StepTx(
                self._raw.driver_connection,
                self.db.engine.dialect.name,
                busy_timeout=self.db.busy_timeout,
            )
        return self._tx

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
            self._tx = None

    def claim(self) -> int | None:
        tx = self._claim_tx()
        with translated(self.db), tx.transaction():
            now = utcnow()
            sid = tx.claimable_session(now, self.options.sessions)
            if sid is None:
                return None
            row = tx.load_session(sid)
            if row.status != "running":
                return None
            state = EngineState.from_json(row.engine_state)
            # A dead worker's claim: its abandoned step becomes a failed attempt first.
            recover_abandoned(tx, row, state, now, self.owner)
            tx.update_session(
                row,
                {
                    "lease_owner": self.owner,
                    "lease_expires_at": now + timedelta(seconds=self.options.lease),
                },
            )
            return sid

    def release(self, sid: int) -> None:
        tx = self._claim_tx()
        with translated(self.db), tx.transaction():
            tx.release_claim(sid, self.owner)

    def run(self) -> None:
        idle_since: float | None = None
        try:
            while not self.stop.is_set():
                try:
                    sid = self.claim()
                except FlowcliError as exc:
                    if isinstance(exc, SessionBusyError):
                        sid = None
                    else:
                        raise
                if sid is None:
                    now = time.monotonic()
                    idle_since = idle_since or now
                    if (
                        self.options.max_idle is not None
                        and now - idle_since >= self.options.max_idle
                    ):
                        return
                    self.stop.wait(self.options.poll)
                    continue
                idle_since = None
                with self.lock:
                    self.summary.claims += 1
                self.emit({"event": "claimed", "worker": self.owner, "session": sid})
                self.drive(sid)
        except FlowcliError as exc:
            with self.lock:
                self.summary.errors.append(str(exc))
            self.emit({"event": "error", "worker": self.owner, "error": str(exc)})
            self.stop.set()
        finally:
            self.close()

    def drive(self, sid: int) -> None:
        runner = SessionRunner(self.db, sid, self.options.responder, owner=self.owner)
        runner.hold_lease = self.options.lease
        steps = 0
        status = "running"
        try:
            while not self.stop.is_set() and steps < self.options.batch:
                try:
                    result = runner.run_step(
                        retries=self.options.retries,
                        backoff=self.options.backoff,
                        on_attempt=lambda r: self._attempt(sid, r),
                    )
                except (SessionStateError, SessionBusyError) as exc:
                    self.emit(
                        {"event": "left", "worker": self.owner, "session": sid, "reason": str(exc)}
                    )
                    return
                steps += 1
                status = result.session.get("status") or status
                if status != "running":
                    break
        finally:
            runner.close()
            if status == "running":
                with contextlib.suppress(FlowcliError):  # else the lease expires by itself
                    self.release(sid)
            self.emit(
                {
                    "event": "released",
                    "worker": self.owner,
                    "session": sid,
                    "steps": steps,
                    "status": status,
                }
            )

    def _attempt(self, sid: int, result: StepResult) -> None:
        status = result.session.get("status")
        with self.lock:
            if result.failed:
                self.summary.failed_attempts += 1
            else:
                self.summary.steps += 1
            if status == "finished":
                self.summary.sessions_finished.append(sid)
            elif status == "failed":
                self.summary.sessions_failed.append(sid)
        log = result.log or {}
        self.emit(
            {
                "event": "step",
                "worker": self.owner,
                "session": sid,
                "execution_order": log.get("execution_order"),
                "step": result.step.order if result.step else None,
                "status": log.get("status"),
                "error": result.error,
                "session_status": status,
            }
        )


def run_worker(
    db: Database,
    options: WorkerOptions,
    *,
    emit: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> WorkerSummary:
    """Drain runnable sessions until stopped, idle past ``max_idle``, or an error."""
    from flowcli.db.schema import require_schema

    require_schema(db)
    stop = stop or threading.Event()
    base = process_owner()
    summary = WorkerSummary(owner=base)
    lock = threading.Lock()
    t0 = time.perf_counter()
    lanes = [
        _Lane(db, options, f"{base}/{i}", emit, stop, summary, lock)
        for i in range(max(1, options.concurrency))
    ]
    threads = [
        threading.Thread(target=lane.run, name=f"flowcli-worker-{i}", daemon=True)
        for i, lane in enumerate(lanes)
    ]
    for thread in threads:
        thread.start()
    requested = False
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.2)
        requested = stop.is_set()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    summary.elapsed_s = round(time.perf_counter() - t0, 3)
    if summary.errors:
        summary.stop_reason = "error"
    elif requested:
        summary.stop_reason = "stopped"
    else:
        summary.stop_reason = "idle"
    return summary
