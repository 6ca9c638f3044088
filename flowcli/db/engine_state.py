"""The engine's per-session memory, kept as JSON in ``sessions.engine_state``.

It holds what MRC got wrong by keeping nowhere: how many times each active loop has
jumped back (reset when the loop is entered anew), the log id of each step's first
pass through the loop (the ``parent_log_id`` of its repeats), and how many attempts
have failed at the current position. It is a cache of what the log rows say: ``at``
stamps the ``executed_steps_count`` it reflects, and when the session row says
otherwise (MRC ran steps since, or the cache is absent) it is rebuilt from the log
(flowcli.engine.replay).

The format of the column lives in the database layer, below the engine, because the
doctor (releasing an abandoned claim) and restore (remapping log ids) rewrite it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# What json.dumps(..., separators=(",", ":")) builds on every call, built once: the state
# is written with every step.
_encode = json.JSONEncoder(separators=(",", ":")).encode


@dataclass
class LoopState:
    """One loop step's jumps made and the log id each iteration started at."""

    jumps: int = 0
    first_logs: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"jumps": self.jumps, "first_logs": {str(k): v for k, v in self.first_logs.items()}}


@dataclass
class EngineState:
    """The engine's counters cached in ``sessions.engine_state`` (rebuilt when stale)."""

    loops: dict[int, LoopState] = field(default_factory=dict)
    failed_attempts: int = 0
    # The sessions.executed_steps_count this state reflects; None = unknown (rebuild).
    at: int | None = None

    @classmethod
    def from_json(cls, raw: str | None) -> EngineState:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        loops: dict[int, LoopState] = {}
        for key, value in (data.get("loops") or {}).items():
            if not isinstance(value, dict):
                continue
            try:
                loops[int(key)] = LoopState(
                    jumps=int(value.get("jumps", 0)),
                    first_logs={int(k): int(v) for k, v in (value.get("first_logs") or {}).items()},
                )
            except (TypeError, ValueError):
                continue
        attempts = data.get("failed_attempts", 0)
        at = data.get("at")
        return cls(
            loops=loops,
            failed_attempts=attempts if isinstance(attempts, int) else 0,
            at=at if isinstance(at, int) and not isinstance(at, bool) else None,
        )

    def to_json(self) -> str:
        # Written with every step, so built as text when every value is a plain int
        # (always, but for a hostile stored value): the same text json writes.
        loops = self.loops_text()
        attempts, at = self.failed_attempts, self.at
        if loops is not None and type(attempts) is int and (at is None or type(at) is int):
            at_text = "null" if at is None else str(at)
            return f'{{"loops":{loops},"failed_attempts":{attempts},"at":{at_text}}}'
        return _encode(
            {
                "loops": self.loops_json(),
                "failed_attempts": self.failed_attempts,
                "at": self.at,
            }
        )

    def loops_text(self) -> str | None:
        """``loops_json()`` as compact JSON text, or None when a value is not a plain int."""
        parts = []
        loops = self.loops
        for key in sorted(loops):
            loop = loops[key]
            if type(key) is not int or type(loop.jumps) is not int:
                return None
            firsts = []
            for order, log_id in loop.first_logs.items():
                if type(order) is not int or type(log_id) is not int:
                    return None
                firsts.append(f'"{order}":{log_id}')
            parts.append(f'"{key}":{{"jumps":{loop.jumps},"first_logs":{{{",".join(firsts)}}}}}')
        return "{" + ",".join(parts) + "}"

    def stamped(self, at: int) -> EngineState:
        """This state, stamped as reflecting ``executed_steps_count == at``."""
        self.at = at
        return self

    def loops_json(self) -> dict[str, Any]:
        return {str(k): v.to_json() for k, v in sorted(self.loops.items())}

    def names_log(self, log_id: int) -> bool:
        """Whether some loop remembers ``log_id`` as a step's first pass."""
        return any(log_id in loop.first_logs.values() for loop in self.loops.values())

    def replace_log_id(self, placeholder: int, log_id: int) -> None:
        """Put the real id where a placeholder stood for a log row not yet inserted."""
        for loop in self.loops.values():
            for order, value in loop.first_logs.items():
                if value == placeholder:
                    loop.first_logs[order] = log_id

    def copy(self) -> EngineState:
        return EngineState(
            loops={k: LoopState(v.jumps, dict(v.first_logs)) for k, v in self.loops.items()},
            failed_attempts=self.failed_attempts,
            at=self.at,
        )
