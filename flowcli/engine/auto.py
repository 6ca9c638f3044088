"""Running a session to its end (``auto``): step after step until it finishes, fails
for good, is paused or cancelled, or a stop condition holds (``--max-steps``,
``--until-step``, a breakpoint, Ctrl-C). The summary says what ran, even when a step
fails with an error (it travels on the error as ``data["summary"]``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowcli.db.connection import Database
from flowcli.db.session_row import ENDED_STATUSES
from flowcli.engine.attempt import SessionRunner, check_runnable
from flowcli.engine.responders import (
    ResponderOptions,
)
from flowcli.engine.step_data import DEFAULT_RETRIES, StepResult
from flowcli.errors import (
    FlowcliError,
    SessionStateError,
)
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.engine.breakpoints import Breakpoints, UpcomingStep

# Statuses at which `auto` stops (a failed session can be resumed, but not driven on).
TERMINAL_STATUSES = (*ENDED_STATUSES, "failed")


@dataclass
class AutoSummary:
    session_id: int
    steps_run: int
    failed_attempts: int
    final_status: str | None
    stop_reason: str
    session: dict[str, Any]
    elapsed_s: float
    error: str | None = None
    # Where a breakpoint (or a declined --step) stopped the run: the step it stopped
    # before, and the breakpoint's kind and reason.
    stopped_before: dict[str, Any] | None = None
    breakpoint: dict[str, Any] | None = None


def auto(
    db: Database,
    session_id: int,
    options: ResponderOptions | None = None,
    *,
    max_steps: int | None = None,
    until_step: int | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[StepResult], None] | None = None,
    breakpoints: Breakpoints | None = None,
    before_step: Callable[[UpcomingStep], bool] | None = None,
    resume_from_break: bool = False,
) -> AutoSummary:
    """Run the session until it finishes, fails for good, or a stop condition holds.

    ``breakpoints`` stop the run before a matching step; ``before_step`` is asked before
    each step and stops the run by returning False. With ``resume_from_break`` the first
    step runs without a breakpoint check (the run continues from where one stopped it).
    Neither costs anything when not given.
    """
    from flowcli.db.schema import require_schema

    require_schema(db)
    t0 = time.perf_counter()
    # SQLAlchemy here, not at import: run-next imports this module through the runner.
    from flowcli.db import session_store as store

    with db.read() as conn:
        row = store.load_session(conn, session_id)
    check_runnable(row)  # a finished, failed, cancelled or paused session says so up front
    position = row.position()
    snapshot = parse_snapshot(row.flow_snapshot)
    steps_run = 0
    failed_attempts = 0
    reason = ""
    error: str | None = None
    failures: list[StepResult] = []
    first = True
    stopped_before: dict[str, Any] | None = None
    hit: dict[str, Any] | None = None

    def count_attempt(result: StepResult) -> None:
        if result.failed:
            failures.append(result)
        if on_step is not None:
            on_step(result)

    try:
        with SessionRunner(db, session_id, options) as runner:
            while True:
                status = position.get("status") or "not_started"
                if status in TERMINAL_STATUSES:
                    reason = status
                    break
                if status == "paused":
                    reason = "paused"
                    break
                if should_stop():
                    reason = "interrupted"
                    break
                if max_steps is not None and steps_run >= max_steps:
                    reason = "max_steps"
                    break
                if until_step is not None:
                    next_id = position.get("current_step_id")
                    next_step = snapshot.by_id.get(next_id) if next_id else snapshot.first_step()
                    if next_step is not None and next_step.order == until_step:
                        reason = "until_step"
                        break
                if breakpoints or before_step is not None:
                    from flowcli.engine.breakpoints import check_before_step

                    check = check_before_step(
                        db, session_id, None if resume_from_break and first else breakpoints
                    )
                    if check.hit is not None and check.upcoming is not None:
                        reason = "breakpoint"
                        stopped_before = check.upcoming.describe()
                        hit = {"kind": check.hit.kind, "reason": check.hit.reason}
                        break
                    if (
                        before_step is not None
                        and check.upcoming is not None
                        and not before_step(check.upcoming)
                    ):
                        reason = "declined"
                        stopped_before = check.upcoming.describe()
                        break
                first = False
                try:
                    result = runner.run_step(
                        retries=retries, backoff=backoff, sleep=sleep, on_attempt=count_attempt
                    )
                except SessionStateError as exc:
                    with db.read() as conn:
                        position = store.load_session(conn, session_id).position()
                    if position.get("status") in (*TERMINAL_STATUSES, "paused"):
                        continue
                    raise exc
                position = result.session
                if not result.failed:
                    steps_run += 1
                elif result.session_failed:
                    error = result.error
                snapshot = runner.known_snapshot or snapshot
    except FlowcliError as exc:
        # The steps before the failure are committed: the summary says so (`auto --json`
        # prints it, then the error's one line).
        exc.data["summary"] = AutoSummary(
            session_id=session_id,
            steps_run=steps_run,
            failed_attempts=len(failures),
            final_status=position.get("status"),
            stop_reason="error",
            session=position,
            elapsed_s=round(time.perf_counter() - t0, 3),
            error=str(exc),
        )
        raise
    failed_attempts = len(failures)
    return AutoSummary(
        session_id=session_id,
        steps_run=steps_run,
        failed_attempts=failed_attempts,
        final_status=position.get("status"),
        stop_reason=reason,
        session=position,
        elapsed_s=round(time.perf_counter() - t0, 3),
        error=error,
        stopped_before=stopped_before,
        breakpoint=hit,
    )
