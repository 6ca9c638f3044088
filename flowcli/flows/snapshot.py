"""A session's flow, read from its snapshot: the steps the engine runs.

Sessions run from ``sessions.flow_snapshot``, never from the live template, so editing
or replacing a template cannot break a running session. MRC wrote snapshots with loose
types (``max_loops`` as a string, ``logic_config`` as JSON text); they are normalised
here, once, leniently, with a warning for anything the engine has to ignore.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, NamedTuple

from flowcli.db.json_text import loads_json
from flowcli.errors import SessionStateError


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


class Loop(NamedTuple):
    """A loop: after step ``at_order`` runs, jump back to ``to_order`` up to ``max_loops`` times."""

    at_order: int
    to_order: int
    max_loops: int

    def contains(self, order: int) -> bool:
        return self.to_order <= order <= self.at_order


class Step:
    """One step of a snapshot, with its loop (if it closes one) and what was wrong with its
    loop settings. A plain class, not a dataclass: creating one at import costs a one-step
    command more than the class is worth (docs/architecture.md)."""

    def __init__(
        self,
        *,
        id: int,  # noqa: A002 - the column's name
        order: int,
        speaker: str,
        target: str | None,
        task_type: str,
        context_scope: str | list[str],
        context_param: dict[str, Any],
        logic_config: dict[str, Any],
        next_step_id: int | None,
        description: str | None,
        raw: dict[str, Any],
        loop: Loop | None = None,
    ) -> None:
        self.id = id
        self.order = order
        self.speaker = speaker
        self.target = target
        self.task_type = task_type
        self.context_scope = context_scope
        self.context_param = context_param
        self.logic_config = logic_config
        self.next_step_id = next_step_id
        self.description = description
        self.raw = raw
        self.loop = loop
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        return f"Step(id={self.id!r}, order={self.order!r}, {self.speaker}→{self.target})"

    # Read every step of a run: a step's settings never change once parsed, so each
    # is worked out once (cached_property), not per execution.
    @cached_property
    def condition(self) -> str | None:
        cond = self.logic_config.get("condition")
        return cond if isinstance(cond, str) and cond.strip() else None

    @cached_property
    def exit_condition(self) -> dict[str, Any] | None:
        exit_cond = self.logic_config.get("exit_condition")
        return exit_cond if isinstance(exit_cond, dict) else None

    @cached_property
    def snapshot_json(self) -> str:
        # Serialised once per step: the log's step_snapshot is the same every execution.
        return json.dumps(self.raw, ensure_ascii=False, default=str)

    @cached_property
    def scope_json(self) -> str:
        # The context scope as a log row's context snapshot writes it (compact JSON).
        return json.dumps(
            self.context_scope, ensure_ascii=False, separators=(",", ":"), default=str
        )

    def label(self) -> str:
        arrow = f" → {self.target}" if self.target else ""
        return f"#{self.order} {self.speaker}{arrow} ({self.task_type})"


def _normalise_scope(value: Any) -> str | list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = loads_json(text, None)
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        return text or "all"
    return "all"


def step_from_dict(raw: dict[str, Any]) -> Step:
    logic = loads_json(raw.get("logic_config"), {})
    if not isinstance(logic, dict):
        logic = {}
    param = loads_json(raw.get("context_param"), {})
    if not isinstance(param, dict):
        param = {}
    order = _as_int(raw.get("order")) or 0
    step = Step(
        id=int(raw["id"]) if raw.get("id") is not None else order,
        order=order,
        speaker=str(raw.get("speaker_role_ref") or ""),
        target=(str(raw["target_role_ref"]) if raw.get("target_role_ref") else None),
        task_type=str(raw.get("task_type") or "comment"),
        context_scope=_normalise_scope(raw.get("context_scope")),
        context_param=param,
        logic_config=logic,
        next_step_id=_as_int(raw.get("next_step_id")),
        description=raw.get("description"),
        raw={**raw, "logic_config": logic, "context_param": param},
    )
    target_order = logic.get("next_step_order")
    if target_order is not None:
        to_order = _as_int(target_order)
        max_loops = _as_int(logic.get("max_loops"))
        if to_order is None:
            step.warnings.append(f"next_step_order {target_order!r} is not an integer: no loop")
        elif logic.get("max_loops") is None:
            # MRC treated this as no loop; an unbounded loop is never what anyone wants.
            step.warnings.append("next_step_order without max_loops is ignored: no loop")
        elif max_loops is None or max_loops < 0:
            step.warnings.append(f"max_loops {logic.get('max_loops')!r} is not a count: no loop")
        elif to_order > order:
            step.warnings.append(f"next_step_order {to_order} points forward: no loop")
        else:
            step.loop = Loop(at_order=order, to_order=to_order, max_loops=max_loops)
    return step


class FlowSnapshot:
    """The flow a session runs: its steps in order, termination and responder settings."""

    def __init__(self, data: dict[str, Any], steps: list[Step]) -> None:
        self.data = data
        self.steps = steps

    def __repr__(self) -> str:
        return f"FlowSnapshot({self.data.get('name')!r}, {len(self.steps)} steps)"

    @cached_property
    def by_id(self) -> dict[int, Step]:
        return {s.id: s for s in self.steps}

    @cached_property
    def by_order(self) -> dict[int, Step]:
        return {s.order: s for s in self.steps}

    @cached_property
    def termination(self) -> dict[str, Any]:
        term = loads_json(self.data.get("termination_config"), {})
        return term if isinstance(term, dict) else {}

    @cached_property
    def max_rounds(self) -> int:
        value = _as_int(self.termination.get("max_rounds"))
        return value if value and value > 0 else 1

    @cached_property
    def max_steps(self) -> int:
        value = _as_int(self.termination.get("max_steps"))
        return value if value and value > 0 else 1000

    @cached_property
    def end_condition(self) -> str | None:
        cond = self.termination.get("end_condition")
        return cond if isinstance(cond, str) and cond.strip() else None

    @cached_property
    def responder(self) -> dict[str, Any] | None:
        resp = loads_json(self.data.get("responder"), None)
        return resp if isinstance(resp, dict) else None

    def first_step(self) -> Step:
        if not self.steps:
            raise SessionStateError("the session's flow has no steps")
        return self.steps[0]

    def step(self, step_id: int | None) -> Step:
        if step_id is None or step_id not in self.by_id:
            raise SessionStateError(
                f"current step {step_id} does not exist in the session's flow snapshot; "
                "run `flowcli db doctor` to examine the session"
            )
        return self.by_id[step_id]

    def following(self, step: Step) -> Step | None:
        index = self.steps.index(step)
        return self.steps[index + 1] if index + 1 < len(self.steps) else None

    def innermost_loop(self, order: int) -> Loop | None:
        """The tightest loop whose body contains the step at ``order``."""
        best: Loop | None = None
        for s in self.steps:
            loop = s.loop
            if loop is None or not loop.contains(order):
                continue
            if best is None or loop.at_order - loop.to_order < best.at_order - best.to_order:
                best = loop
        return best

    def warnings(self) -> list[str]:
        return [f"step {s.order}: {w}" for s in self.steps for w in s.warnings]


def parse_snapshot(raw: Any) -> FlowSnapshot:
    data = loads_json(raw, None)
    if not isinstance(data, dict):
        raise SessionStateError("the session has no usable flow snapshot")
    steps_raw = data.get("steps")
    if not isinstance(steps_raw, list):
        raise SessionStateError("the session's flow snapshot has no step list")
    steps = sorted(
        (step_from_dict(s) for s in steps_raw if isinstance(s, dict)), key=lambda s: s.order
    )
    return FlowSnapshot(data=data, steps=steps)
