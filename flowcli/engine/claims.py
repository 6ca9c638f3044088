"""Who holds a session's step: claims (leases), their owners, and recovering the
``running`` log rows that no live process will ever finish.

A network step is claimed (a ``running`` log row and a lease, committed) before its
responder is called. A running row is abandoned when its claim expired, when the claim's
process is gone (same host, no such pid), or when there is no claim at all: MRC writes
running rows without one, and ``session cancel`` drops the claim of a step in flight.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

from flowcli.db.leases import claim_live, host_name
from flowcli.engine import recording
from flowcli.errors import SessionBusyError

if TYPE_CHECKING:
    from flowcli.db.engine_state import EngineState
    from flowcli.db.session_store import SessionRow
    from flowcli.db.step_tx import StepTx


def process_owner() -> str:
    """A claim owner id unique to this process (host, pid, random suffix)."""
    return f"{host_name()}:{os.getpid()}:{os.urandom(4).hex()}"


def claim_state(row: SessionRow, now: datetime, owner: str | None) -> str:
    """``none`` (no claim), ``ours`` (a live claim of ``owner``) or ``abandoned`` (expired,
    or its process gone); a live claim of another process raises SessionBusyError."""
    if row.lease_owner is None:
        return "none"
    if row.lease_owner == owner and row.lease_expires_at is not None:
        return "ours" if row.lease_expires_at > now else "abandoned"
    if not claim_live(row.lease_owner, row.lease_expires_at, now):
        return "abandoned"
    raise SessionBusyError(
        f"session {row.id} is busy: another process ({row.lease_owner}) is running "
        f"a step until {row.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC; try again later"
    )


INTERRUPTED_NO_CLAIM = (
    "interrupted: no process holds this step (it was left running without a claim, by "
    "another engine or after the session's claim was dropped); the step runs again"
)


def recover_abandoned(
    tx: StepTx, row: SessionRow, state: EngineState, now: datetime, owner: str | None
) -> None:
    """Refuse a live claim of another process; close what no live process holds.

    The ``running`` log rows of an abandoned claim, or of a session with no claim at all,
    become failed attempts ("interrupted"), so the step runs again with its attempt count
    increased; an abandoned claim is released.
    """
    held = claim_state(row, now, owner)
    if held == "ours":
        return  # our own live claim (a worker holding the session between steps)
    abandoned = tx.running_log_ids(row.id)
    if held == "none" and not abandoned:
        return
    message = (
        "interrupted: the process running this step "
        f"({row.lease_owner}) stopped before finishing it; the step runs again"
        if row.lease_owner is not None
        else INTERRUPTED_NO_CLAIM
    )
    for log_id in abandoned:
        recording.close_log(
            tx,
            log_id,
            {
                "status": "failed",
                "result_type": "error",
                "error_message": message,
                "completed_at": now,
            },
        )
        state.failed_attempts += 1
    recording.move_session(
        tx,
        row,
        {"lease_owner": None, "lease_expires_at": None, "engine_state": state.to_json()},
    )
