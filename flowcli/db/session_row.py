"""A session row as the engine reads it, and the statuses a session can have.

Kept apart from flowcli.db.session_store (SQLAlchemy Core) so that the step's hot path
(flowcli.db.step_tx, on the bare driver) and the one-step commands never import
SQLAlchemy to name a row.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Every status a session can have. 'terminated' is MRC's word for a forced stop (flowcli
# writes it when it cancels a session on a database MRC owns), 'cancelled' flowcli's own.
SESSION_STATUSES = (
    "not_started",
    "running",
    "paused",
    "finished",
    "failed",
    "cancelled",
    "terminated",
)
# Statuses after which a session runs no more steps.
ENDED_STATUSES = ("finished", "cancelled", "terminated")

SESSION_POSITION_COLUMNS = (
    "id",
    "status",
    "current_step_id",
    "current_round",
    "executed_steps_count",
    "error_reason",
)

_position_of = operator.attrgetter(*SESSION_POSITION_COLUMNS)


def utcnow() -> datetime:
    """Naive UTC, as MRC stores timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class SessionRow:
    """A ``sessions`` row: the columns the engine reads and writes."""

    id: int
    topic: str
    flow_template_id: int
    flow_snapshot: str | None
    roles_snapshot: str | None
    status: str | None
    current_step_id: int | None
    current_round: int | None
    executed_steps_count: int | None
    error_reason: str | None
    version: int | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    engine_state: str | None
    variables: str | None
    created_at: datetime | None
    updated_at: datetime | None
    ended_at: datetime | None

    def position(self) -> dict[str, Any]:
        return dict(zip(SESSION_POSITION_COLUMNS, _position_of(self), strict=True))

    def vars(self) -> dict[str, Any]:
        try:
            data = json.loads(self.variables) if self.variables else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
