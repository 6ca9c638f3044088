"""Debugging a session, one module per command: fork (flowcli.engine.fork), retry
(flowcli.engine.retry), skip (flowcli.engine.skip) and diff (flowcli.engine.diff).
This face keeps their names importable from one place."""

from __future__ import annotations

from flowcli.engine.diff import DIFF_FIELDS, diff_sessions
from flowcli.engine.fork import COPY_BATCH, fork_session, remap_context, remap_result_data
from flowcli.engine.retry import retry_failed_step
from flowcli.engine.skip import SKIPPABLE_STATUSES, skip_step

__all__ = [
    "COPY_BATCH",
    "DIFF_FIELDS",
    "SKIPPABLE_STATUSES",
    "diff_sessions",
    "fork_session",
    "remap_context",
    "remap_result_data",
    "retry_failed_step",
    "skip_step",
]
