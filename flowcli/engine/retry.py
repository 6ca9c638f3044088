"""``session retry``: run a failed session's failed step again (resume, then one step,
written as every step is)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcli.db import session_store as store
from flowcli.errors import SessionStateError

if TYPE_CHECKING:
    from flowcli.db.connection import Database
    from flowcli.engine.responders import ResponderOptions
    from flowcli.engine.runner import StepResult


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
