"""What an attempt at a step carries from its read to its write: the prepared step,
the verdict of its conditions, and the result the caller gets (StepResult)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowcli.db.engine_state import EngineState
from flowcli.db.session_row import SessionRow
from flowcli.db.step_tx import StepTx
from flowcli.engine.planner import Advance, StepPlan
from flowcli.engine.step_names import LazyNames
from flowcli.flows.snapshot import FlowSnapshot, Step

DEFAULT_RETRIES = 2
# Lease on a claimed step = responder timeout plus this margin.
LEASE_MARGIN_SECONDS = 30.0


_STATM_FD: int | None = None


def resident_memory_mb() -> float | None:
    """This process's resident memory, cheaply: /proc/self/statm, kept open and re-read."""
    global _STATM_FD
    try:
        if _STATM_FD is None:
            _STATM_FD = os.open("/proc/self/statm", os.O_RDONLY)
        pages = int(os.pread(_STATM_FD, 128, 0).split()[1])
        return round(pages * _PAGE_SIZE / (1024 * 1024), 2)
    except (OSError, ValueError, IndexError):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class StepResult:
    """What one attempt did, for rendering and for the retry policy."""

    session: dict[str, Any]
    step: Step | None
    log: dict[str, Any] | None
    message: dict[str, Any] | None
    decision: Advance | None = None
    condition: str | None = None
    condition_value: bool | None = None
    failed: bool = False
    retryable: bool = False
    retry_after: float | None = None
    error: str | None = None
    session_failed: bool = False

    @property
    def skipped(self) -> bool:
        return bool(self.log and self.log.get("status") == "skipped")


# Stands in for the log id in the loop state until the row is inserted (advance() is
# decided first so the log row is written once, complete).
PENDING_LOG_ID = -1
# Stands in for the new message's id when no condition reads it.
PENDING_MESSAGE_ID = -1
# How often the exit and end conditions are evaluated again because another session's
# message took the id they were evaluated with (each retry is rare; several, rarer).
MESSAGE_ID_TRIES = 20


class Stale(Exception):
    """Internal: the session moved between an attempt's read and its write; read again."""


class MessageIdTaken(Exception):
    """Internal: the new message did not get the id its conditions were evaluated with."""


def session_stamp(row: SessionRow) -> tuple[Any, ...]:
    """What must be unchanged for a decision read from ``row`` to hold when it is written.
    The version alone would do on flowcli's own writes; MRC leaves it as it is."""
    return (
        row.version,
        row.executed_steps_count,
        row.current_step_id,
        row.current_round,
        row.status,
        row.lease_owner,
    )


@dataclass
class Verdict:
    """What the exit and end conditions said about the new message, before it is written."""

    exit_met: bool | None
    end_met: bool
    error: str | None
    message_id: int | None  # the id they saw; None when they do not read messages


@dataclass
class Prepared:
    row: SessionRow
    snapshot: FlowSnapshot
    state: EngineState
    plan: StepPlan
    names: LazyNames
    roles_snapshot: dict[str, Any]
    execution_order: int
    started_at: datetime
    t0: float
    tx: StepTx
    condition_value: bool | None = None
    context_ids: list[int] = field(default_factory=list)
    context_views: list[Any] = field(default_factory=list)
    # The one timestamp of the transaction recording this attempt (completion, message,
    # session update): the step's start for a local step, the record's moment after a
    # network call.
    now: datetime | None = None

    def moment(self) -> datetime:
        return self.now if self.now is not None else self.started_at
