"""Bounded JSON for snapshots: huge values are cut, with a marker saying so.

Log rows must stay small however large a session's variables or messages grow, so
every snapshot passes through ``bounded_dumps`` before it is written.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

TRUNCATION_MARKER = "…[truncated {n} chars]"
MAX_STRING = 2000
MAX_ITEMS = 100
MAX_DEPTH = 8
MAX_SNAPSHOT_CHARS = 16_000
# json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str), whose
# encoder (and C encoder) json builds again on every call; a step writes two snapshots,
# so they are built once here. The C encoder is called directly, without json's
# circular-reference bookkeeping: what is written comes from JSON text or from plain
# dicts the engine builds, which cannot refer to themselves.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
if c_make_encoder is not None:
    _c_compact = c_make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)

    def compact_dumps(value: Any) -> str:
        """json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)."""
        if isinstance(value, str):
            return encode_basestring(value)
        return "".join(_c_compact(value, 0))

else:  # pragma: no cover - CPython always has the C encoder
    compact_dumps = _COMPACT.encode  # type: ignore[assignment]


def _bound(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return value[:MAX_STRING] + TRUNCATION_MARKER.format(n=len(value) - MAX_STRING)
        return value
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= MAX_DEPTH:
        return "…[truncated: nested too deep]"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:200]: _bound(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"[truncated {len(items) - MAX_ITEMS} more keys]"
        return out
    if isinstance(value, list | tuple):
        seq = list(value)
        out_list = [_bound(v, depth + 1) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            out_list.append(f"…[truncated {len(seq) - MAX_ITEMS} more items]")
        return out_list
    return _bound(str(value), depth)


def bounded(value: Any) -> Any:
    return _bound(value, 0)


def bounded_dumps(value: Any, limit: int = MAX_SNAPSHOT_CHARS) -> str:
    """JSON of ``value`` no longer than about ``limit`` characters."""
    text = compact_dumps(value)
    if len(text) <= limit:
        return text
    text = compact_dumps(bounded(value))
    if len(text) <= limit:
        return text
    return json.dumps(
        {
            "truncated": True,
            "size": len(text),
            "preview": text[: limit // 2] + TRUNCATION_MARKER.format(n=len(text) - limit // 2),
        },
        ensure_ascii=False,
    )
