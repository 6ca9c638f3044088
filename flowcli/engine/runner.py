"""Running a session: one step (``run_next_step``) or to the end (``auto``).

Each attempt at a step is one short write transaction that writes the log row, the
message, any session roles it needs and the session's new position together. A
local responder (the template) runs inside that transaction; a network responder
never does: the step is claimed first (a ``running`` log row and a lease on the
session, committed), the responder is called with no transaction open, and the result
is recorded in a second transaction that checks the claim is still ours (the session
version acts as a fencing token). docs/engine.md describes the design.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from flowcli.db import session_store as store
from flowcli.db.connection import Database
from flowcli.engine.bounded import bounded, bounded_dumps
from flowcli.engine.planner import Advance, StepPlan, advance, plan_step
from flowcli.engine.responders import (
    Responder,
    ResponderOptions,
    ResponderReply,
    ResponderRequest,
    build_responder,
)
from flowcli.engine.snapshot import FlowSnapshot, Step, loads_json, parse_snapshot
from flowcli.engine.state import EngineState
from flowcli.errors import (
    ExpressionError,
    FlowcliError,
    ResponderError,
    SessionBusyError,
    SessionStateError,
)

TERMINAL_STATUSES = ("finished", "failed", "cancelled")
DEFAULT_RETRIES = 2
# Lease on a claimed step = responder timeout plus this margin.
LEASE_MARGIN_SECONDS = 30.0


def process_owner() -> str:
    """A claim owner id unique to this process (host, pid, random suffix)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def resident_memory_mb() -> float | None:
    """This process's resident memory, cheaply, from /proc where it exists."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return round(pages * _PAGE_SIZE / (1024 * 1024), 2)
    except (OSError, ValueError, IndexError):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class StepResult:
    """What one attempt did, for rendering and for the retry policy."""

    session: dict[str, Any]
    step: Step | None
    log: dict[str, Any] | None
    message: dict[str, Any] | None
    decision: Advance | None = None
    condition: str | None = None
    condition_value: bool | None = None
    failed: bool = False
    retryable: bool = False
    retry_after: float | None = None
    error: str | None = None
    session_failed: bool = False

    @property
    def skipped(self) -> bool:
        return bool(self.log and self.log.get("status") == "skipped")


class _LazyNames(Mapping[str, Any]):
    """Expression names; ``last`` and ``messages`` are read only if an expression uses them."""

    def __init__(self, values: dict[str, Any], loaders: dict[str, Callable[[], Any]]) -> None:
        self._values = values
        self._loaders = loaders

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        if key in self._loaders:
            value = self._loaders[key]()
            self._values[key] = value
            return value
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter({*self._values, *self._loaders})

    def __len__(self) -> int:
        return len({*self._values, *self._loaders})

    def with_new_message(self, view: Any, executed: int) -> _LazyNames:
        values = dict(self._values)
        values["executed_steps"] = executed
        loaders = dict(self._loaders)
        if view is not None:
            values["last"] = view
            if "messages" in self._values:
                values["messages"] = [*self._values["messages"], view]
            elif "messages" in loaders:
                old = loaders["messages"]
                loaders["messages"] = lambda: [*old(), view]
        return _LazyNames(values, loaders)


def _view(row: tuple[Any, ...] | None) -> Any:
    from flowcli.engine.expressions import MessageView

    if row is None:
        return None
    mid, speaker, target, content, section, round_index = row
    return MessageView(
        id=mid,
        speaker=speaker,
        target=target,
        content=content,
        section=section,
        round=round_index,
    )


@dataclass
class _Prepared:
    row: store.SessionRow
    snapshot: FlowSnapshot
    state: EngineState
    plan: StepPlan
    names: _LazyNames
    roles_snapshot: dict[str, Any]
    execution_order: int
    started_at: datetime
    t0: float
    conn: Connection | None = None
    condition_value: bool | None = None
    context_ids: list[int] = field(default_factory=list)
    context_views: list[Any] = field(default_factory=list)


class SessionRunner:
    """Runs the steps of one session, caching what does not change between steps."""

    def __init__(
        self,
        db: Database,
        session_id: int,
        options: ResponderOptions | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.session_id = session_id
        self.options = options or ResponderOptions()
        self.owner = owner or process_owner()
        self._snapshot_cache: tuple[str | None, FlowSnapshot] | None = None
        self._responder: Responder | None = None
        self._role_ids: dict[str, int] | None = None
        self._role_prompts: dict[str, str | None] = {}

    # --- public -------------------------------------------------------------------

    def run_step(
        self,
        *,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        on_attempt: Callable[[StepResult], None] | None = None,
    ) -> StepResult:
        """Run the next step, retrying transient failures ``retries`` times with backoff."""
        from flowcli.db.schema import require_schema

        require_schema(self.db)
        for attempt in range(retries + 1):
            result = self.attempt(retries_left=retries - attempt)
            if on_attempt is not None:
                on_attempt(result)
            if not (result.failed and result.retryable and not result.session_failed):
                return result
            delay = min(backoff * (2**attempt), max_backoff)
            if result.retry_after is not None:
                delay = min(max(result.retry_after, 0.0), max_backoff)
            sleep(delay)
        return result

    def attempt(self, *, retries_left: int = 0) -> StepResult:
        """One attempt at the next step, logged whatever its outcome."""
        responder: Responder | None = None
        with self.db.write() as conn:
            row = store.load_session(conn, self.session_id, for_update=True)
            snapshot = self._snapshot(row)
            responder = self._responder_for(snapshot)
            prep_or_result = self._prepare(conn, row, snapshot)
            if isinstance(prep_or_result, StepResult):
                return prep_or_result
            prep = prep_or_result
            outcome = self._decide_condition(conn, prep, retries_left)
            if outcome is not None:
                return outcome
            if responder.is_local:
                reply, error = self._call(responder, prep)
                return self._record(conn, prep, responder, reply, error, retries_left, None)
            claim_log_id = self._claim(conn, prep, responder)
            claimed_version = prep.row.version
        # No transaction is open here: the network call may take as long as it needs.
        reply, error = self._call(responder, prep)
        with self.db.write() as conn:
            row = store.load_session(conn, self.session_id, for_update=True)
            if row.lease_owner != self.owner or row.version != claimed_version:
                raise SessionBusyError(
                    f"session {self.session_id}: this process lost its claim on the step "
                    "(its lease expired and another process took over); its result was discarded"
                )
            prep.row = row
            prep.conn = conn
            return self._record(conn, prep, responder, reply, error, retries_left, claim_log_id)

    # --- preparation ----------------------------------------------------------------

    def _snapshot(self, row: store.SessionRow) -> FlowSnapshot:
        if self._snapshot_cache is None or self._snapshot_cache[0] != row.flow_snapshot:
            self._snapshot_cache = (row.flow_snapshot, parse_snapshot(row.flow_snapshot))
            self._responder = None
        return self._snapshot_cache[1]

    def _responder_for(self, snapshot: FlowSnapshot) -> Responder:
        if self._responder is None:
            self._responder = build_responder(self.options, snapshot.responder)
        return self._responder

    def _prepare(
        self, conn: Connection, row: store.SessionRow, snapshot: FlowSnapshot
    ) -> _Prepared | StepResult:
        check_runnable(row)
        now = store.utcnow()
        state = EngineState.from_json(row.engine_state)
        self._recover_abandoned(conn, row, state, now)
        if row.status == "not_started" or row.current_step_id is None:
            first = snapshot.first_step()
            store.update_session(
                conn,
                row,
                {
                    "status": "running",
                    "current_step_id": first.id,
                    "current_round": 1,
                    "executed_steps_count": row.executed_steps_count or 0,
                },
                bump_version=True,
            )
        executed = row.executed_steps_count or 0
        if executed >= snapshot.max_steps:
            reason = (
                f"reached termination_config.max_steps ({snapshot.max_steps}) "
                "before the flow finished"
            )
            store.update_session(conn, row, {"status": "failed", "error_reason": reason[:500]})
            return StepResult(
                session=row.position(),
                step=None,
                log=None,
                message=None,
                failed=True,
                error=reason,
                session_failed=True,
            )
        step = snapshot.step(row.current_step_id)
        plan = plan_step(snapshot, step, row.current_round or 1, state)
        roles_snapshot = loads_json(row.roles_snapshot, {})
        if not isinstance(roles_snapshot, dict):
            roles_snapshot = {}
        values = {
            "round": plan.round,
            "step": step.order,
            "loop_iteration": plan.loop_iteration,
            "executed_steps": executed,
            "topic": row.topic,
            "vars": row.vars(),
            "speaker": step.speaker,
            "target": step.target,
            "task_type": step.task_type,
        }
        sid = row.id
        prep = _Prepared(
            row=row,
            snapshot=snapshot,
            state=state,
            plan=plan,
            names=_LazyNames(values, {}),
            roles_snapshot=roles_snapshot,
            execution_order=store.next_execution_order(conn, sid),
            started_at=now,
            t0=time.perf_counter(),
            conn=conn,
        )

        # The loaders read through prep.conn: a claimed step records its result on a
        # second connection, after the first one is closed.
        def current() -> Connection:
            assert prep.conn is not None
            return prep.conn

        prep.names = _LazyNames(
            values,
            {
                "last": lambda: _view(store.last_message_view(current(), sid)),
                "messages": lambda: [_view(r) for r in store.all_message_views(current(), sid)],
            },
        )
        return prep

    def _recover_abandoned(
        self, conn: Connection, row: store.SessionRow, state: EngineState, now: datetime
    ) -> None:
        lease_live = (
            row.lease_owner is not None
            and row.lease_expires_at is not None
            and row.lease_expires_at > now
        )
        if lease_live and row.lease_owner != self.owner:
            raise SessionBusyError(
                f"session {row.id} is busy: another process ({row.lease_owner}) is running "
                f"a step until {row.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC; try again later"
            )
        abandoned = store.running_logs(conn, row.id)
        if not abandoned and row.lease_owner is None:
            return
        for log in abandoned:
            store.update_log(
                conn,
                log["id"],
                {
                    "status": "failed",
                    "result_type": "error",
                    "error_message": (
                        "interrupted: the process running this step "
                        f"({row.lease_owner or 'unknown'}) stopped before finishing it; "
                        "the step runs again"
                    ),
                    "completed_at": now,
                },
            )
            state.failed_attempts += 1
        store.update_session(
            conn,
            row,
            {"lease_owner": None, "lease_expires_at": None, "engine_state": state.to_json()},
        )

    # --- condition, call, record ----------------------------------------------------------

    def _decide_condition(
        self, conn: Connection, prep: _Prepared, retries_left: int
    ) -> StepResult | None:
        cond = prep.plan.step.condition
        if cond is None:
            return None
        from flowcli.engine.expressions import compile_expression

        try:
            value = compile_expression(cond).evaluate_bool(prep.names)
        except ExpressionError as exc:
            return self._record_failure(
                conn,
                prep,
                None,
                f"condition {cond!r}: {exc}",
                retryable=False,
                retries_left=retries_left,
                retry_after=None,
                claim_log_id=None,
            )
        prep.condition_value = value
        if value:
            return None
        return self._record_skip(conn, prep)

    def _context(self, prep: _Prepared) -> tuple[list[int], list[Any]]:
        return prep.context_ids, prep.context_views

    def _load_context(self, conn: Connection, prep: _Prepared) -> None:
        step = prep.plan.step
        n = step.context_param.get("n", 5)
        rows = store.message_views(
            conn,
            prep.row.id,
            scope=step.context_scope,
            round_=prep.plan.round,
            n=n if isinstance(n, int) and not isinstance(n, bool) else 5,
        )
        prep.context_ids = [r[0] for r in rows]
        prep.context_views = [_view(r) for r in rows]
        prompt_key = step.speaker
        if prompt_key not in self._role_prompts:
            self._role_prompts[prompt_key] = store.role_prompt(
                conn, step.speaker, prep.roles_snapshot
            )

    def _call(
        self, responder: Responder, prep: _Prepared
    ) -> tuple[ResponderReply | None, ResponderError | None]:
        step = prep.plan.step
        request = ResponderRequest(
            session_id=prep.row.id,
            topic=prep.row.topic,
            speaker=step.speaker,
            target=step.target,
            task_type=step.task_type,
            speaker_prompt=self._role_prompts.get(step.speaker),
            context=prep.context_views,
            names=prep.names,
        )
        try:
            return responder.respond(request), None
        except ResponderError as exc:
            return None, exc
        except ExpressionError as exc:
            return None, ResponderError(str(exc))

    def _claim(self, conn: Connection, prep: _Prepared, responder: Responder) -> int:
        """Commit a ``running`` log row and a lease, so the network call runs unlocked."""
        self._load_context(conn, prep)
        timeout = getattr(responder, "timeout", 60.0) * (getattr(responder, "retries", 0) + 1)
        lease_until = store.utcnow() + timedelta(seconds=timeout + LEASE_MARGIN_SECONDS)
        log_id = store.insert_log(
            conn,
            self._log_values(
                prep,
                {
                    "status": "running",
                    "result_type": None,
                },
            ),
        )
        store.update_session(
            conn,
            prep.row,
            {
                "lease_owner": self.owner,
                "lease_expires_at": lease_until,
            },
        )
        return log_id

    def _log_values(self, prep: _Prepared, extra: dict[str, Any]) -> dict[str, Any]:
        plan = prep.plan
        context = {
            "round": plan.round,
            "step_order": plan.step.order,
            "loop_iteration": plan.loop_iteration,
            "attempt": plan.attempt,
            "executed_steps": prep.row.executed_steps_count or 0,
            "vars": bounded(prep.row.vars()),
            "loops": json.loads(prep.state.to_json())["loops"],
            "context": {
                "scope": plan.step.context_scope,
                "message_ids": prep.context_ids[-50:],
                "count": len(prep.context_ids),
                "truncated": len(prep.context_ids) > 50,
            },
        }
        values = {
            "session_id": prep.row.id,
            "step_id": plan.step.id,
            "parent_log_id": plan.parent_log_id,
            "execution_order": prep.execution_order,
            "round_index": plan.round,
            "loop_iteration": plan.loop_iteration,
            "attempt_count": plan.attempt,
            "condition_evaluation": prep.condition_value,
            "created_at": prep.started_at,
            "started_at": prep.started_at,
            "step_snapshot": plan.step.snapshot_json,
            "context_snapshot": bounded_dumps(context),
            "memory_usage_mb": resident_memory_mb(),
        }
        values.update(extra)
        return values

    def _finish_values(self, prep: _Prepared) -> dict[str, Any]:
        return {
            "completed_at": store.utcnow(),
            "duration_ms": int((time.perf_counter() - prep.t0) * 1000),
            "memory_usage_mb": resident_memory_mb(),
        }

    def _record_skip(self, conn: Connection, prep: _Prepared) -> StepResult:
        values = self._log_values(
            prep,
            {
                "status": "skipped",
                "result_type": "condition_false",
                "condition_evaluation": False,
                **self._finish_values(prep),
            },
        )
        log_id = store.insert_log(conn, values)
        decision = advance(prep.snapshot, prep.plan, prep.state, log_id=log_id, ran=False)
        data = {"skipped": True, "condition": prep.plan.step.condition, "decision": decision.reason}
        self._write_position(conn, prep, decision, None, log_id, data, values)
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
        conn: Connection,
        prep: _Prepared,
        responder: Responder,
        reply: ResponderReply | None,
        error: ResponderError | None,
        retries_left: int,
        claim_log_id: int | None,
    ) -> StepResult:
        if error is not None or reply is None:
            assert error is not None
            return self._record_failure(
                conn,
                prep,
                responder,
                str(error),
                retryable=error.transient,
                retries_left=retries_left,
                retry_after=error.retry_after,
                claim_log_id=claim_log_id,
            )
        if claim_log_id is None:
            self._load_context(conn, prep)
        step = prep.plan.step
        roles = self._session_roles(conn, prep.row.id)
        speaker_sr = store.ensure_session_role(
            conn, prep.row.id, step.speaker, prep.roles_snapshot, roles
        )
        target_sr = (
            store.ensure_session_role(conn, prep.row.id, step.target, prep.roles_snapshot, roles)
            if step.target
            else None
        )
        now = store.utcnow()
        message_values = {
            "session_id": prep.row.id,
            "speaker_session_role_id": speaker_sr,
            "target_session_role_id": target_sr,
            "reply_to_message_id": prep.context_ids[-1] if prep.context_ids else None,
            "content": reply.content,
            "round_index": prep.plan.round,
            "section": step.task_type,
            "created_at": now,
        }
        message_id = store.insert_message(conn, message_values)
        message = {
            "id": message_id,
            **message_values,
            "speaker": step.speaker,
            "target": step.target,
        }
        executed = (prep.row.executed_steps_count or 0) + 1
        after = prep.names.with_new_message(
            _view(
                (
                    message_id,
                    step.speaker,
                    step.target,
                    reply.content,
                    step.task_type,
                    prep.plan.round,
                )
            ),
            executed,
        )
        exit_met, loop_error = self._exit_condition(step, after)
        if loop_error is not None:
            return self._record_failure(
                conn,
                prep,
                responder,
                loop_error,
                retryable=False,
                retries_left=0,
                retry_after=None,
                claim_log_id=claim_log_id,
                rollback_message=message_id,
            )
        log_values = self._log_values(
            prep,
            {
                "status": "completed",
                **self._finish_values(prep),
            },
        )
        log_id = store.insert_log(conn, log_values) if claim_log_id is None else claim_log_id
        decision = advance(
            prep.snapshot,
            prep.plan,
            prep.state,
            log_id=log_id,
            ran=True,
            exit_condition_met=exit_met,
        )
        end_met, end_error = self._end_condition(prep.snapshot, after)
        if end_error is not None:
            return self._record_failure(
                conn,
                prep,
                responder,
                end_error,
                retryable=False,
                retries_left=0,
                retry_after=None,
                claim_log_id=claim_log_id or log_id,
                rollback_message=message_id,
            )
        if end_met and not decision.finished:
            decision.finished = True
            decision.next_step = None
            decision.state.loops.clear()
            decision.reason += "; end_condition is true: finished"
        log_values["result_type"] = decision.loop_result or "success"
        log_values["loop_check_result"] = decision.loop_check_result
        data = {
            "message_id": message_id,
            "responder": responder.describe(),
            "tokens": reply.tokens,
            "model": reply.model,
            "exit_condition": exit_met,
            "end_condition": end_met,
            "decision": decision.reason,
        }
        self._write_position(
            conn, prep, decision, message, log_id, data, log_values, update_log=True
        )
        return StepResult(
            session=prep.row.position(),
            step=step,
            log={"id": log_id, **log_values},
            message=message,
            decision=decision,
            condition=step.condition,
            condition_value=prep.condition_value,
        )

    def _exit_condition(
        self, step: Step, names: Mapping[str, Any]
    ) -> tuple[bool | None, str | None]:
        exit_cond = step.exit_condition
        if step.loop is None or exit_cond is None:
            return None, None
        kind = exit_cond.get("type")
        if kind == "llm_accept_flag":
            last = names["last"]
            return accept_flag(last.content if last is not None else ""), None
        expr = exit_cond.get("expr")
        if kind == "expression" and isinstance(expr, str):
            from flowcli.engine.expressions import compile_expression

            try:
                return compile_expression(expr).evaluate_bool(names), None
            except ExpressionError as exc:
                return None, f"exit condition {expr!r}: {exc}"
        return None, None

    def _end_condition(
        self, snapshot: FlowSnapshot, names: Mapping[str, Any]
    ) -> tuple[bool, str | None]:
        cond = snapshot.end_condition
        if cond is None:
            return False, None
        from flowcli.engine.expressions import compile_expression

        try:
            return compile_expression(cond).evaluate_bool(names), None
        except ExpressionError as exc:
            return False, f"end condition {cond!r}: {exc}"

    def _session_roles(self, conn: Connection, session_id: int) -> dict[str, int]:
        if self._role_ids is None:
            self._role_ids = store.session_role_ids(conn, session_id)
        return self._role_ids

    def _write_position(
        self,
        conn: Connection,
        prep: _Prepared,
        decision: Advance,
        message: dict[str, Any] | None,
        log_id: int,
        data: dict[str, Any],
        log_values: dict[str, Any],
        *,
        update_log: bool = True,
    ) -> None:
        data["next_step_id"] = decision.next_step.id if decision.next_step else None
        data["next_round"] = decision.next_round
        data["finished"] = decision.finished
        log_values["result_data"] = bounded_dumps(data)
        if update_log:
            store.update_log(
                conn,
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
                    if k in log_values
                },
            )
        values: dict[str, Any] = {
            "current_step_id": decision.next_step.id if decision.next_step else None,
            "current_round": decision.next_round,
            "executed_steps_count": (prep.row.executed_steps_count or 0) + 1,
            "engine_state": decision.state.to_json(),
            "lease_owner": None,
            "lease_expires_at": None,
            "error_reason": None,
        }
        if decision.finished:
            values["status"] = "finished"
            values["ended_at"] = store.utcnow()
        store.update_session(conn, prep.row, values)

    def _record_failure(
        self,
        conn: Connection,
        prep: _Prepared,
        responder: Responder | None,
        message: str,
        *,
        retryable: bool,
        retries_left: int,
        retry_after: float | None,
        claim_log_id: int | None,
        rollback_message: int | None = None,
    ) -> StepResult:
        if rollback_message is not None:
            from sqlalchemy import delete

            conn.execute(delete(store.messages_t).where(store.messages_t.c.id == rollback_message))
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
        if claim_log_id is None:
            log_id = store.insert_log(conn, values)
        else:
            log_id = claim_log_id
            store.update_log(
                conn,
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
        state = prep.state.copy()
        state.failed_attempts += 1
        session_values: dict[str, Any] = {
            "engine_state": state.to_json(),
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if final:
            reason = (
                f"step {prep.plan.step.order} failed after {prep.plan.attempt} attempt(s): "
                f"{message}"
            )
            session_values["status"] = "failed"
            session_values["error_reason"] = reason[:500]
        store.update_session(conn, prep.row, session_values)
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


def accept_flag(content: str) -> bool:
    """MRC's llm_accept_flag: the message parses as JSON with ``"accept": true``."""
    text = (content or "").strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    try:
        data = json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            return False
        try:
            data = json.loads(text[start : end + 1])
        except ValueError:
            return False
    return isinstance(data, dict) and data.get("accept") is True


def check_runnable(row: store.SessionRow) -> None:
    status = row.status or "not_started"
    if status == "finished":
        raise SessionStateError(f"session {row.id} is finished; there is no next step")
    if status == "cancelled":
        raise SessionStateError(f"session {row.id} was cancelled")
    if status == "failed":
        reason = f": {row.error_reason}" if row.error_reason else ""
        raise SessionStateError(
            f"session {row.id} has failed{reason}; run `flowcli session resume {row.id}` "
            "to make it runnable again"
        )
    if status == "paused":
        raise SessionStateError(
            f"session {row.id} is paused; run `flowcli session resume {row.id}` first"
        )
    if status not in ("running", "not_started"):
        raise SessionStateError(f"session {row.id} has unknown status {status!r}")


def run_next_step(
    db: Database,
    session_id: int,
    options: ResponderOptions | None = None,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    on_attempt: Callable[[StepResult], None] | None = None,
) -> StepResult:
    """Execute exactly one step of the session (starting it if needed), with retries."""
    runner = SessionRunner(db, session_id, options)
    return runner.run_step(retries=retries, backoff=backoff, sleep=sleep, on_attempt=on_attempt)


@dataclass
class AutoSummary:
    session_id: int
    steps_run: int
    failed_attempts: int
    final_status: str | None
    stop_reason: str
    session: dict[str, Any]
    elapsed_s: float
    error: str | None = None


def auto(
    db: Database,
    session_id: int,
    options: ResponderOptions | None = None,
    *,
    max_steps: int | None = None,
    until_step: int | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[StepResult], None] | None = None,
) -> AutoSummary:
    """Run the session until it finishes, fails for good, or a stop condition holds."""
    from flowcli.db.schema import require_schema

    require_schema(db)
    t0 = time.perf_counter()
    runner = SessionRunner(db, session_id, options)
    with db.read() as conn:
        row = store.load_session(conn, session_id)
    check_runnable(row)  # a finished, failed, cancelled or paused session says so up front
    position = row.position()
    snapshot = parse_snapshot(row.flow_snapshot)
    steps_run = 0
    failed_attempts = 0
    reason = ""
    error: str | None = None
    failures: list[StepResult] = []

    def count_attempt(result: StepResult) -> None:
        if result.failed:
            failures.append(result)
        if on_step is not None:
            on_step(result)

    while True:
        status = position.get("status") or "not_started"
        if status in TERMINAL_STATUSES:
            reason = status
            break
        if status == "paused":
            reason = "paused"
            break
        if should_stop():
            reason = "interrupted"
            break
        if max_steps is not None and steps_run >= max_steps:
            reason = "max_steps"
            break
        if until_step is not None:
            next_id = position.get("current_step_id")
            next_step = snapshot.by_id.get(next_id) if next_id else snapshot.first_step()
            if next_step is not None and next_step.order == until_step:
                reason = "until_step"
                break
        try:
            result = runner.run_step(
                retries=retries, backoff=backoff, sleep=sleep, on_attempt=count_attempt
            )
        except SessionStateError as exc:
            with db.read() as conn:
                position = store.load_session(conn, session_id).position()
            if position.get("status") in (*TERMINAL_STATUSES, "paused"):
                continue
            raise exc
        position = result.session
        if not result.failed:
            steps_run += 1
        elif result.session_failed:
            error = result.error
        snapshot = runner._snapshot_cache[1] if runner._snapshot_cache else snapshot
    failed_attempts = len(failures)
    return AutoSummary(
        session_id=session_id,
        steps_run=steps_run,
        failed_attempts=failed_attempts,
        final_status=position.get("status"),
        stop_reason=reason,
        session=position,
        elapsed_s=round(time.perf_counter() - t0, 3),
        error=error,
    )


__all__ = [
    "AutoSummary",
    "FlowcliError",
    "SessionRunner",
    "StepResult",
    "auto",
    "run_next_step",
]
