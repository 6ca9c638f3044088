"""How stored values become JSON: times as UTC ISO 8601 with ``Z``, sets and tuples as
lists, dataclasses as objects, anything else as its text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def utc_iso(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z``. A naive value is UTC (MRC's convention for storage)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return str(value)
