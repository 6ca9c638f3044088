"""Where a log row is written, and the session moved with it.

Every execution flowcli logs goes through here: a step (the runner, and so ``session
retry``), a skip (``session skip``) and a fork's copies (``session fork``).
``log_row`` builds a row's values, ``insert_log``/``close_log`` write it,
``position_after`` is the session position a planner decision leaves, and
``move_session`` writes it with the version check (no lost update).

MRC-safe numbering: a row is numbered ``max(executed_steps_count, max order) + 1``
(``StepTx.next_execution_order``) and every row written sets ``executed_steps_count``
to its own number, so MRC's next number (count + 1) is always free.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowcli.db.json_text import loads_json
from flowcli.db.plain_schema import STEP_LOG_COLUMNS
from flowcli.db.session_row import SessionRow, utcnow
from flowcli.db.step_tx import apply_values
from flowcli.engine.bounded import MAX_SNAPSHOT_CHARS, bounded_dumps, compact_dumps
from flowcli.engine.conventions import Conventions, content_summary, conventions_for
from flowcli.engine.planner import Advance, advance
from flowcli.engine.responders import Responder, ResponderError, ResponderReply
from flowcli.engine.step_data import (
    LEASE_MARGIN_SECONDS,
    PENDING_LOG_ID,
    MessageIdTaken,
    Prepared,
    Stale,
    StepResult,
    Verdict,
    resident_memory_mb,
)

if TYPE_CHECKING:
    from flowcli.db.connection import Database
    from flowcli.db.engine_state import EngineState
    from flowcli.db.step_tx import StepTx
    from flowcli.engine.planner import StepPlan
    from flowcli.flows.snapshot import Step

# How many context message ids a log row keeps (the count says how many there were).
CONTEXT_IDS_KEPT = 50
# A fork's copy takes these columns as they are; the rest point at other rows (remapped).
COPIED_COLUMNS = tuple(
    c
    for c in STEP_LOG_COLUMNS
    if c not in ("session_id", "parent_log_id", "result_data", "context_snapshot")
)


def context_snapshot(
    plan: StepPlan,
    *,
    executed: int,
    variables: Any,
    loops: Any,
    context_ids: list[int],
) -> str:
    """The ``context_snapshot`` of an execution: its counters, the variables, the loop
    counters and the messages it was shown (bounded)."""
    return bounded_dumps(
        {
            "round": plan.round,
            "step_order": plan.step.order,
            "loop_iteration": plan.loop_iteration,
            "attempt": plan.attempt,
            "executed_steps": executed,
            "vars": variables,
            "loops": loops,
            "context": {
                "scope": plan.step.context_scope,
                "message_ids": context_ids[-CONTEXT_IDS_KEPT:],
                "count": len(context_ids),
                "truncated": len(context_ids) > CONTEXT_IDS_KEPT,
            },
        }
    )


def context_snapshot_text(
    plan: StepPlan,
    *,
    executed: int,
    vars_text: str,
    state: EngineState,
    context_ids: list[int],
) -> str | None:
    """``context_snapshot``'s text, written as text (its shape is fixed): the same
    characters, without building the dictionaries. ``vars_text`` is the variables'
    compact JSON. None when a value is not a plain int or the text is too long: then
    ``context_snapshot`` decides (it bounds what is too long)."""
    loops = state.loops_text()
    if loops is None:
        return None
    step = plan.step
    numbers = (plan.round, step.order, plan.loop_iteration, plan.attempt, executed)
    kept = context_ids[-CONTEXT_IDS_KEPT:]
    for number in (*numbers, *kept):
        if type(number) is not int:
            return None
    count = len(context_ids)
    text = (
        f'{{"round":{plan.round},"step_order":{step.order},'
        f'"loop_iteration":{plan.loop_iteration},"attempt":{plan.attempt},'
        f'"executed_steps":{executed},"vars":{vars_text},"loops":{loops},'
        f'"context":{{"scope":{step.scope_json},"message_ids":[{",".join(map(str, kept))}],'
        f'"count":{count},"truncated":{"true" if count > CONTEXT_IDS_KEPT else "false"}}}}}'
    )
    return text if len(text) <= MAX_SNAPSHOT_CHARS else None


def log_row(
    plan: StepPlan,
    *,
    session_id: int,
    execution_order: int,
    started_at: datetime,
    context: str,
    condition_value: bool | None,
    memory_mb: float | None,
    **outcome: Any,
) -> dict[str, Any]:
    """A log row's values: where and when it ran, then ``outcome`` (status, result…)."""
    values: dict[str, Any] = {
        "session_id": session_id,
        "step_id": plan.step.id,
        "parent_log_id": plan.parent_log_id,
        "execution_order": execution_order,
        "round_index": plan.round,
        "loop_iteration": plan.loop_iteration,
        "attempt_count": plan.attempt,
        "condition_evaluation": condition_value,
        "created_at": started_at,
        "started_at": started_at,
        "step_snapshot": plan.step.snapshot_json,
        "context_snapshot": context,
        "memory_usage_mb": memory_mb,
    }
    values.update(outcome)
    return values


def copied_log_row(
    log: dict[str, Any],
    *,
    session_id: int,
    parent_log_id: int | None,
    result_data: str | None,
    context_snapshot: Any,
) -> dict[str, Any]:
    """A fork's copy of ``log``: every column as it was, the references remapped."""
    values = {c: log[c] for c in COPIED_COLUMNS}
    values.update(
        session_id=session_id,
        parent_log_id=parent_log_id,
        result_data=result_data,
        context_snapshot=context_snapshot,
    )
    return values


def logged_message_id(result_data: Any) -> int | None:
    """The id of the message a log row wrote (its ``result_data.message_id``), if any."""
    data = loads_json(result_data, {})
    mid = data.get("message_id") if isinstance(data, dict) else None
    return mid if isinstance(mid, int) and not isinstance(mid, bool) else None


def insert_log(tx: StepTx, values: dict[str, Any]) -> int:
    """Write a log row (complete, once); its id."""
    return tx.insert_log(values)


def close_log(
    tx: StepTx, log_id: int, values: dict[str, Any], *, only_running: bool = False
) -> None:
    """Finish a claimed (``running``) row with its outcome."""
    tx.update_log(log_id, values, only_running=only_running)


def position_after(
    decision: Advance,
    execution_order: int,
    *,
    step: Step,
    keeps_last_step: bool,
    now: datetime,
) -> dict[str, Any]:
    """The session's values after an execution numbered ``execution_order`` and the
    planner's ``decision``: the next position, the count, the loop state, and on the
    last step ``finished`` (MRC keeps the last step as the current one)."""
    values: dict[str, Any] = {
        "current_step_id": decision.next_step.id if decision.next_step else None,
        "current_round": decision.next_round,
        # Every logged execution counts, so MRC's next number (count + 1) is free.
        "executed_steps_count": execution_order,
        "engine_state": decision.state.stamped(execution_order).to_json(),
        "error_reason": None,
    }
    if decision.finished:
        values["status"] = "finished"
        values["ended_at"] = now
        if keeps_last_step:
            values["current_step_id"] = step.id
    return values


def move_session(tx: StepTx, row: SessionRow, values: dict[str, Any]) -> None:
    """Write the session's new values if it is still at the version read."""
    tx.update_session(row, values)


class StepRecorder:
    """The runner's writes, inside its write transactions: claiming a network step,
    recording a skip, a completed step or a failed attempt (flowcli.engine.attempt's
    SessionRunner is one). Each writes its log row and the session's new position."""

    db: Database
    owner: str
    hold_lease: float | None
    _conventions: Conventions | None
    _known_order: tuple[int | None, int] | None
    _row_written: SessionRow | None
    # The variables this runner last wrote into a context snapshot, and their JSON text.
    _vars_text: tuple[Any, str] | None = None
    _role_ids: dict[str, int] | None
    _state_cache: tuple[tuple[str | None, int | None], EngineState] | None
    # The message this runner wrote last, as ((session version, executed count) after
    # that write, view row): while both are unchanged nobody wrote since (flowcli bumps
    # the version, MRC the count), so it is still the session's newest message. Every
    # message (context scope "all") is kept under the same rule: read once, then extended
    # with each message this runner writes.
    _newest_message: tuple[tuple[int | None, int | None], tuple[Any, ...]] | None
    _all_messages: tuple[tuple[int | None, int | None], list[tuple[Any, ...]]] | None

    @property
    def conventions(self) -> Conventions:
        """How this database's rows are written (its owner's conventions), read once."""
        if self._conventions is None:
            self._conventions = conventions_for(self.db.owner)
        return self._conventions

    def _claim(self, prep: Prepared, responder: Responder) -> int:
        """Commit a ``running`` log row and a lease, so the network call runs unlocked."""
        timeout = getattr(responder, "timeout", 60.0) * (getattr(responder, "retries", 0) + 1)
        lease_until = prep.moment() + timedelta(seconds=timeout + LEASE_MARGIN_SECONDS)
        values = self._log_values(prep, {"status": "running", "result_type": None})
        written = self._move_unchanged(
            prep,
            {
                "lease_owner": self.owner,
                "lease_expires_at": lease_until,
                # The claimed row is an execution logged: MRC's next number is above it.
                "executed_steps_count": prep.execution_order,
                "engine_state": prep.state.copy().stamped(prep.execution_order).to_json(),
            },
        )
        log_id = insert_log(prep.tx, values)
        apply_values(prep.row, written)
        self._remember_order(prep)
        return log_id

    def _move_unchanged(self, prep: Prepared, values: dict[str, Any]) -> dict[str, Any]:
        """The first write of a step's transaction: the session's new values, written only
        if the session is still as the step read it (the fence; Stale if not). What was
        written is applied to ``prep.row`` by the caller once the rest is written."""
        written = prep.tx.update_session_if_unchanged(prep.row, values)
        if written is None:
            raise Stale
        return written

    def _abandon_claim(self, tx: StepTx, row: SessionRow, claim_log_id: int) -> None:
        """Our claimed row loses to a step another engine (MRC) ran meanwhile: it is
        marked failed and the claim released (the caller discards the result)."""
        close_log(
            tx,
            claim_log_id,
            {
                "status": "failed",
                "result_type": "error",
                "error_message": "discarded: another engine ran a step of this session "
                "while this process waited for its responder",
                "completed_at": utcnow(),
            },
        )
        move_session(tx, row, {"lease_owner": None, "lease_expires_at": None})

    def _lease_after_step(self, now: datetime, *, ended: bool) -> dict[str, Any]:
        """Release the step's claim, or renew the session claim a worker holds."""
        if self.hold_lease is None or ended:
            return {"lease_owner": None, "lease_expires_at": None}
        return {
            "lease_owner": self.owner,
            "lease_expires_at": now + timedelta(seconds=self.hold_lease),
        }

    def _remember_order(self, prep: Prepared, state: EngineState | None = None) -> None:
        """Remember what this runner just wrote: the order, and the engine state it
        stamped, so the next step neither reads the order nor parses the state again
        while the session row is as this write left it."""
        self._known_order = (prep.row.version, prep.row.executed_steps_count or 0)
        # The next attempt plans on this row instead of reading it (flowcli.engine.attempt).
        self._row_written = prep.row
        if state is not None:
            # Kept as it is, not copied: nothing changes a state once it is written (the
            # next step's advance works on a copy).
            self._state_cache = ((prep.row.engine_state, prep.row.executed_steps_count), state)

    def _forget_writes(self) -> None:
        # A rolled-back write: what was remembered of it may name a version that another
        # process's next write will reuse.
        self._known_order = None
        self._row_written = None
        self._role_ids = None
        self._newest_message = None
        self._all_messages = None

    def _remember_message(
        self,
        before: tuple[int | None, int | None],
        after: tuple[int | None, int | None],
        message: dict[str, Any],
    ) -> None:
        """Keep the message just written as the session's newest (and append it to the
        whole list, when that was read at the state this write started from)."""
        # As the message views read it back: the target only through its session role.
        target = message["target"] if message["target_session_role_id"] is not None else None
        view = (
            message["id"],
            message["speaker"],
            target,
            message["content"],
            message["section"],
            message["round_index"],
        )
        every = self._all_messages
        if every is not None and every[0] == before:
            every[1].append(view)
            self._all_messages = (after, every[1])
        else:
            self._all_messages = None
        self._newest_message = (after, view)

    def _newest_view(self, prep: Prepared) -> tuple[Any, ...] | None:
        """The session's newest message as a view row: the one this runner wrote, while the
        session is as that write left it; else read."""
        cached = self._newest_message
        if cached is not None and cached[0] == (prep.row.version, prep.row.executed_steps_count):
            return cached[1]
        return prep.tx.last_message_view(prep.row.id)

    def _every_message(self, prep: Prepared) -> list[tuple[Any, ...]]:
        """Every message of the session as view rows, oldest first: kept from this runner's
        own reads and writes while the session is as its last write left it, else read."""
        stamp = (prep.row.version, prep.row.executed_steps_count)
        cached = self._all_messages
        if cached is None or cached[0] != stamp:
            cached = (stamp, prep.tx.message_views(prep.row.id, scope="all", round_=0))
            self._all_messages = cached
        return list(cached[1])

    def _log_values(self, prep: Prepared, extra: dict[str, Any]) -> dict[str, Any]:
        plan = prep.plan
        executed = prep.row.executed_steps_count or 0
        variables = prep.names["vars"]
        cached = self._vars_text
        if cached is None or cached[0] is not variables:
            # The variables' text, once per variables read (usually once per run).
            cached = self._vars_text = (variables, compact_dumps(variables))
        context = context_snapshot_text(
            plan,
            executed=executed,
            vars_text=cached[1],
            state=prep.state,
            context_ids=prep.context_ids,
        )
        if context is None:
            context = context_snapshot(
                plan,
                executed=executed,
                variables=variables,
                loops=prep.state.loops_json(),
                context_ids=prep.context_ids,
            )
        return log_row(
            plan,
            session_id=prep.row.id,
            execution_order=prep.execution_order,
            started_at=prep.started_at,
            context=context,
            condition_value=prep.condition_value,
            memory_mb=resident_memory_mb(),
            **extra,
        )

    def _finish_values(self, prep: Prepared) -> dict[str, Any]:
        return {
            "completed_at": prep.moment(),
            "duration_ms": int((time.perf_counter() - prep.t0) * 1000),
        }

    def _record_skip(self, prep: Prepared) -> StepResult:
        decision = advance(
            prep.snapshot,
            prep.plan,
            prep.state,
            log_id=PENDING_LOG_ID,
            ran=False,
            rounds_end_on_summary=self.conventions.rounds_end_on_summary,
        )
        data = {"skipped": True, "condition": prep.plan.step.condition}
        values = self._log_values(
            prep,
            {
                "status": "skipped",
                "result_type": "condition_false",
                "condition_evaluation": False,
                **self._finish_values(prep),
            },
        )
        moved = self._move_after(prep, decision)
        log_id = self._write(prep, decision, None, None, data, values, moved)
        return StepResult(
            session=prep.row.position(),
            step=prep.plan.step,
            log={"id": log_id, **values},
            message=None,
            decision=decision,
            condition=prep.plan.step.condition,
            condition_value=False,
        )

    def _record(
        self,
        prep: Prepared,
        responder: Responder,
        reply: ResponderReply | None,
        error: ResponderError | None,
        retries_left: int,
        claim_log_id: int | None,
        verdict: Verdict | None,
    ) -> StepResult:
        """Inside the write transaction: the message, the log row, the new position."""
        if error is not None or reply is None or verdict is None:
            assert error is not None
            return self._record_failure(
                prep,
                responder,
                str(error),
                retryable=error.transient,
                retries_left=retries_left,
                retry_after=error.retry_after,
                claim_log_id=claim_log_id,
            )
        if verdict.error is not None:
            return self._record_failure(
                prep,
                responder,
                verdict.error,
                retryable=False,
                retries_left=0,
                retry_after=None,
                claim_log_id=claim_log_id,
            )
        step = prep.plan.step
        conventions = self.conventions
        exit_met, end_met = verdict.exit_met, verdict.end_met
        decision = advance(
            prep.snapshot,
            prep.plan,
            prep.state,
            log_id=PENDING_LOG_ID,
            ran=True,
            exit_condition_met=exit_met,
            end_condition_met=end_met,
            rounds_end_on_summary=conventions.rounds_end_on_summary,
        )
        if conventions.replies_to_newest:
            # Read before the session moves: the newest message is known by its stamp.
            newest = self._newest_view(prep)
            reply_to = newest[0] if newest else None
        else:
            reply_to = prep.context_ids[-1] if prep.context_ids else None
        values = self._log_values(
            prep,
            {
                "status": "completed",
                "result_type": decision.loop_result or "success",
                "loop_check_result": decision.loop_check_result,
                **self._finish_values(prep),
            },
        )
        # The fence first: nothing below is written unless the session is as read.
        moved = self._move_after(prep, decision)
        roles = self._session_roles(prep)
        speaker_sr = self._ensure_role(prep, roles, step.speaker)
        if not step.target:
            target_sr = None
        elif conventions.creates_target_role:
            target_sr = self._ensure_role(prep, roles, step.target)
        else:
            # MRC names a target only through the session's mapping, and never fails on it.
            target_sr = roles.get(step.target)
        message_values = {
            "session_id": prep.row.id,
            "speaker_session_role_id": speaker_sr,
            "target_session_role_id": target_sr,
            "reply_to_message_id": reply_to,
            "content": reply.content,
            "content_summary": content_summary(reply.content),
            "round_index": prep.plan.round,
            "section": conventions.section(step.task_type),
            "created_at": prep.moment(),
        }
        message_id = prep.tx.insert_message(message_values, reserved_id=verdict.message_id)
        if verdict.message_id is not None and message_id != verdict.message_id:
            raise MessageIdTaken
        message = {
            "id": message_id,
            **message_values,
            "speaker": step.speaker,
            "target": step.target,
        }
        data = {
            "message_id": message_id,
            "responder": responder.describe(),
            "tokens": reply.tokens,
            "model": reply.model,
            "exit_condition": exit_met,
            "end_condition": end_met,
            "decision": decision.reason,
        }
        log_id = self._write(prep, decision, message, claim_log_id, data, values, moved)
        return StepResult(
            session=prep.row.position(),
            step=step,
            log={"id": log_id, **values},
            message=message,
            decision=decision,
            condition=step.condition,
            condition_value=prep.condition_value,
        )

    def _session_roles(self, prep: Prepared) -> dict[str, int]:
        if self._role_ids is None:
            self._role_ids = prep.tx.session_role_ids(prep.row.id)
        return self._role_ids

    def _ensure_role(self, prep: Prepared, known: dict[str, int], ref: str) -> int:
        """The session_roles id for ``ref``, created (as MRC did, by role name) when missing."""
        if ref not in known:
            role_id, _prompt = prep.tx.resolve_role(ref, prep.roles_snapshot, prep.row.id)
            known[ref] = prep.tx.insert_session_role(prep.row.id, ref, role_id)
        return known[ref]

    def _move_after(self, prep: Prepared, decision: Advance) -> tuple[dict[str, Any], bool]:
        """Move the session where ``decision`` leads, if it is still as read (the fence,
        the transaction's first write). Returns what was written, and whether the engine
        state still waits for the log id of the row about to be inserted (a loop's first
        pass names it): then the state is written once that row exists."""
        pending = decision.state.names_log(PENDING_LOG_ID)
        values = position_after(
            decision,
            prep.execution_order,
            step=prep.plan.step,
            keeps_last_step=self.conventions.keeps_last_step,
            now=prep.moment(),
        )
        if pending:
            del values["engine_state"]
        values.update(self._lease_after_step(prep.moment(), ended=decision.finished))
        values["updated_at"] = prep.moment()
        return self._move_unchanged(prep, values), pending

    def _write(
        self,
        prep: Prepared,
        decision: Advance,
        message: dict[str, Any] | None,
        claim_log_id: int | None,
        data: dict[str, Any],
        log_values: dict[str, Any],
        moved: tuple[dict[str, Any], bool],
    ) -> int:
        """After ``_move_after``: write the log row (complete, once), then the engine state
        if it waited for the row's id."""
        data["next_step_id"] = decision.next_step.id if decision.next_step else None
        data["next_round"] = decision.next_round
        data["finished"] = decision.finished
        log_values["result_data"] = bounded_dumps(data)
        if claim_log_id is None:
            log_id = insert_log(prep.tx, log_values)
        else:
            log_id = claim_log_id
            close_log(
                prep.tx,
                log_id,
                {
                    k: log_values[k]
                    for k in (
                        "status",
                        "result_type",
                        "result_data",
                        "loop_check_result",
                        "completed_at",
                        "duration_ms",
                        "memory_usage_mb",
                        "condition_evaluation",
                    )
                },
            )
        written, pending = moved
        if pending:
            decision.state.replace_log_id(PENDING_LOG_ID, log_id)
            written["engine_state"] = decision.state.to_json()
            prep.tx.set_engine_state(prep.row, written["engine_state"])
        before = (prep.row.version, prep.row.executed_steps_count)
        apply_values(prep.row, written)
        # position_after stamped the decision's state: it is what was just written.
        self._remember_order(prep, decision.state)
        if message is not None:
            self._remember_message(
                before, (prep.row.version, prep.row.executed_steps_count), message
            )
        return log_id

    def _record_failure(
        self,
        prep: Prepared,
        responder: Responder | None,
        message: str,
        *,
        retryable: bool,
        retries_left: int,
        retry_after: float | None,
        claim_log_id: int | None,
    ) -> StepResult:
        final = not retryable or retries_left <= 0
        data = {
            "responder": responder.describe() if responder else None,
            "retryable": retryable,
            "final": final,
        }
        values = self._log_values(
            prep,
            {
                "status": "failed",
                "result_type": "error",
                "error_message": message,
                "result_data": bounded_dumps(data),
                **self._finish_values(prep),
            },
        )
        state = prep.state.copy()
        state.failed_attempts += 1
        state.stamped(prep.execution_order)
        session_values: dict[str, Any] = {
            # A failed attempt is an execution logged: it counts (MRC numbers above it).
            "executed_steps_count": prep.execution_order,
            "engine_state": state.to_json(),
            **self._lease_after_step(prep.moment(), ended=final),
            "updated_at": prep.moment(),
        }
        if final:
            reason = (
                f"step {prep.plan.step.order} failed after {prep.plan.attempt} attempt(s): "
                f"{message}"
            )
            session_values["status"] = "failed"
            session_values["error_reason"] = reason[:500]
        # The fence first: the log row is written only if the session is as read.
        written = self._move_unchanged(prep, session_values)
        if claim_log_id is None:
            log_id = insert_log(prep.tx, values)
        else:
            log_id = claim_log_id
            close_log(
                prep.tx,
                log_id,
                {
                    k: values[k]
                    for k in (
                        "status",
                        "result_type",
                        "error_message",
                        "result_data",
                        "completed_at",
                        "duration_ms",
                        "memory_usage_mb",
                    )
                },
            )
        apply_values(prep.row, written)
        self._remember_order(prep, state)
        return StepResult(
            session=prep.row.position(),
            step=prep.plan.step,
            log={"id": log_id, **values},
            message=None,
            condition=prep.plan.step.condition,
            condition_value=prep.condition_value,
            failed=True,
            retryable=retryable and not final,
            retry_after=retry_after,
            error=message,
            session_failed=final,
        )
