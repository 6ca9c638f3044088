"""JSON on stdout: one document (``--json``) or one object a line (``--jsonl``).

Times are ISO 8601 in UTC with ``Z``; dataclasses, sets and tuples become objects and lists.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
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


def to_json(data: Any, *, indent: int | None = 2) -> str:
    return json.dumps(data, default=json_default, indent=indent, ensure_ascii=False)


def print_json(data: Any) -> None:
    """stdout gets exactly one JSON document."""
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def print_jsonl(rows: Iterable[dict[str, Any]]) -> None:
    write = sys.stdout.write
    for row in rows:
        write(json.dumps(row, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()
