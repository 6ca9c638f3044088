"""JSON kept in Text columns, as MRC stores it (snapshots, variables, result data).

Decoded leniently: a column MRC or an older flowcli wrote may hold text that is not JSON,
or a value the driver already decoded. The database layer owns this, so every floor above
(flows, engine, render) can read such columns without importing one another.
"""

from __future__ import annotations

import json
from typing import Any


def loads_json(value: Any, default: Any) -> Any:
    """JSON stored in a Text column, or already decoded; ``default`` when empty."""
    if value is None or value == "":
        return default
    if isinstance(value, dict | list):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


def json_dict(raw: Any) -> dict[str, Any]:
    """A JSON object column decoded; {} for anything else (absent, not JSON, a list)."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def parse_json_column(raw: Any) -> Any:
    """A JSON Text column decoded; text that is not JSON is returned as it is."""
    if raw is None or not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw
