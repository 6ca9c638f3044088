"""Running a session: one step (``run_next_step``) or to the end (``auto``).

The face of the engine's runner, split by responsibility:
- flowcli.engine.attempt: one step, attempt by attempt, with retries (SessionRunner);
- flowcli.engine.recording: where its log rows are written and the session moved;
- flowcli.engine.auto: the loop that runs a session to its end;
- flowcli.engine.step_data / step_names: what an attempt carries, the names it sees.
docs/engine.md describes the design.
"""

from __future__ import annotations

from flowcli.engine.attempt import (
    SessionRunner,
    accept_flag,
    check_runnable,
    run_next_step,
    step_report,
)
from flowcli.engine.auto import TERMINAL_STATUSES, AutoSummary, auto
from flowcli.engine.claims import claim_state, process_owner, recover_abandoned
from flowcli.engine.step_data import (
    DEFAULT_RETRIES,
    LEASE_MARGIN_SECONDS,
    StepResult,
    resident_memory_mb,
)
from flowcli.errors import FlowcliError

__all__ = [
    "DEFAULT_RETRIES",
    "LEASE_MARGIN_SECONDS",
    "TERMINAL_STATUSES",
    "AutoSummary",
    "FlowcliError",
    "SessionRunner",
    "StepResult",
    "accept_flag",
    "auto",
    "check_runnable",
    "claim_state",
    "process_owner",
    "recover_abandoned",
    "resident_memory_mb",
    "run_next_step",
    "step_report",
]
