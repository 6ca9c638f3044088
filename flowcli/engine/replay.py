"""Rebuilding a session's engine state from its log rows, whoever wrote them.

Loop counters, first-pass log ids, the position, the round and the failed attempts at
the current position are what the planner holds after the logged executions, so they
can always be rebuilt by replaying the planner over the log. ``sessions.engine_state``
is only a cache of that: it carries a stamp (``at``, the ``executed_steps_count`` it
reflects), and when the stamp differs from the session row (MRC ran steps since, or
the cache is absent) the state is rebuilt here. One replay serves the runner, explain,
skip and fork.

Rows flowcli wrote record where the session went next (``result_data.next_step_id``).
MRC's rows record nothing of the kind (and MRC's ``result_type`` does not say whether a
loop step jumped), so for them the jump is read from where the session actually went
next: the next row's step, or, for the last row, the session's ``current_step_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowcli.db.engine_state import EngineState
from flowcli.db.json_text import loads_json
from flowcli.engine.planner import advance, plan_step
from flowcli.flows.snapshot import FlowSnapshot

if TYPE_CHECKING:
    from flowcli.db.session_store import SessionRow
    from flowcli.db.step_tx import StepTx

# A claim still open (or abandoned): not an outcome yet. When an expired claim is found,
# the runner marks its row failed and counts the attempt then (recover_abandoned).
_IN_FLIGHT = ("running", "pending")
_UNSET: Any = object()


@dataclass
class Replay:
    """The planner replayed over log rows fed in execution order.

    A row is applied once the next one is known (where the session went next); call
    ``finish`` with what followed the last row.
    """

    snapshot: FlowSnapshot
    rounds_end_on_summary: bool = False
    # The log id the replayed state records for a row (fork maps rows to their copies).
    log_id_for: Callable[[Mapping[str, Any]], int] = field(default=lambda row: int(row["id"]))
    state: EngineState = field(default_factory=EngineState)
    step_id: int | None = None
    round: int = 1
    finished: bool = False
    rows: int = 0
    _pending: Mapping[str, Any] | None = None

    def feed(self, row: Mapping[str, Any]) -> None:
        if self._pending is not None:
            self._apply(
                self._pending,
                then_step_id=row["step_id"],
                then_round=row.get("round_index"),
                then_finished=False,
            )
        self._pending = row
        self.rows += 1

    def finish(
        self,
        *,
        then_step_id: Any = _UNSET,
        then_round: int | None = None,
        then_finished: bool | None = None,
    ) -> Replay:
        """Apply the last row, given where the session went after it (if known)."""
        if self._pending is not None:
            self._apply(
                self._pending,
                then_step_id=then_step_id,
                then_round=then_round,
                then_finished=then_finished,
            )
            self._pending = None
        return self

    def _apply(
        self,
        row: Mapping[str, Any],
        *,
        then_step_id: Any,
        then_round: int | None,
        then_finished: bool | None,
    ) -> None:
        status = row.get("status")
        round_index = row.get("round_index") or self.round
        if status in _IN_FLIGHT or status not in ("completed", "skipped"):
            if status not in _IN_FLIGHT:
                # A failed attempt leaves the position; the next attempt counts up.
                self.state.failed_attempts += 1
            self.step_id = row["step_id"]
            self.round = round_index
            self.finished = False
            return
        recorded = loads_json(row.get("result_data"), {})
        recorded = recorded if isinstance(recorded, dict) else {}
        if "next_step_id" in recorded:
            # flowcli recorded its decision: that is where the session went.
            then_step_id = recorded["next_step_id"]
            if isinstance(recorded.get("next_round"), int):
                then_round = recorded["next_round"]
            if isinstance(recorded.get("finished"), bool):
                then_finished = recorded["finished"]
        step = self.snapshot.by_id.get(row["step_id"])
        if step is None:
            self.state.failed_attempts = 0
            self.step_id = None if then_step_id is _UNSET else then_step_id
        else:
            ran = status == "completed"
            observed_jump = None
            if ran and step.loop is not None and then_step_id is not _UNSET:
                target = self.snapshot.by_order.get(step.loop.to_order)
                observed_jump = (
                    target is not None and then_step_id == target.id and not then_finished
                )
            decision = advance(
                self.snapshot,
                plan_step(self.snapshot, step, round_index, self.state),
                self.state,
                log_id=self.log_id_for(row),
                ran=ran,
                observed_jump=observed_jump,
                rounds_end_on_summary=self.rounds_end_on_summary,
            )
            self.state = decision.state
            self.step_id = decision.next_step.id if decision.next_step else None
            self.round = decision.next_round
            self.finished = decision.finished
        # What really happened next wins over the replayed decision.
        if then_step_id is not _UNSET and then_step_id is not None:
            self.step_id = then_step_id
        if isinstance(then_round, int):
            self.round = then_round
        if then_finished is not None:
            self.finished = then_finished
        if self.finished:
            self.step_id = None
            self.state.loops.clear()


def replay_rows(
    snapshot: FlowSnapshot,
    rows: Iterable[Mapping[str, Any]],
    row: SessionRow | None = None,
    *,
    rounds_end_on_summary: bool = False,
) -> Replay:
    """Replay every row; ``row`` (the session) says where it went after the last one."""
    replay = Replay(snapshot, rounds_end_on_summary=rounds_end_on_summary)
    for log in rows:
        replay.feed(log)
    if row is None:
        return replay.finish()
    finished = row.status == "finished"
    return replay.finish(
        then_step_id=None if finished else row.current_step_id,
        then_round=row.current_round,
        then_finished=finished,
    )


def current_state(
    tx: StepTx,
    row: SessionRow,
    snapshot: FlowSnapshot,
    *,
    rounds_end_on_summary: bool = False,
    cached: EngineState | None = None,
) -> tuple[EngineState, bool]:
    """The session's engine state and whether it had to be rebuilt from the log.

    The cache (``sessions.engine_state``, or ``cached`` parsed from it) is used when its
    stamp matches the session's ``executed_steps_count``; otherwise the log is replayed.
    """
    state = cached if cached is not None else EngineState.from_json(row.engine_state)
    count = row.executed_steps_count or 0
    if state.at == count:
        return state, False
    replay = replay_rows(
        snapshot, tx.replay_rows(row.id), row, rounds_end_on_summary=rounds_end_on_summary
    )
    return replay.state.stamped(count), True
