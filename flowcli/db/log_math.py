"""Arithmetic on log values, with no database: percentiles of durations, and the
difference between two context snapshots (``logs show``, ``session diff``)."""

from __future__ import annotations

import math
from typing import Any


def percentile(sorted_values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of an ascending list (None when it is empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted paths; lists and scalars are leaves."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def dict_diff(before: Any, after: Any) -> dict[str, Any]:
    """Keys added, removed and changed between two JSON objects (dotted paths)."""
    old, new = flatten(before), flatten(after)
    return {
        "added": {k: new[k] for k in new if k not in old},
        "removed": {k: old[k] for k in old if k not in new},
        "changed": {k: [old[k], new[k]] for k in new if k in old and old[k] != new[k]},
    }
