"""Running a session: one step (``run_next_step``) or to the end (``auto``).

Each attempt reads first, then evaluates (condition, template, exit and end
conditions) with no transaction open, then writes the log row, the message, any
session roles it needs and the session's new position in one short transaction that
checks the session is still where it was read (the session version is the fencing
token). A network responder is called between a claim (a ``running`` log row and a
lease, committed) and the record, which checks the claim is still ours.
docs/engine.md describes the design.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowcli.db import session_store as store
from flowcli.db.connection import Database
from flowcli.db.engine_state import EngineState
from flowcli.db.failures import translated
from flowcli.db.json_text import loads_json
from flowcli.db.session_store import SessionRow, utcnow
from flowcli.db.step_tx import LockPatience, StepTx
from flowcli.engine.bounded import bounded_dumps
from flowcli.engine.claims import claim_state, process_owner, recover_abandoned
from flowcli.engine.conventions import Conventions, content_summary, conventions_for
from flowcli.engine.planner import Advance, StepPlan, advance, max_steps_reached, plan_step
from flowcli.engine.replay import current_state
from flowcli.engine.responders import (
    Responder,
    ResponderOptions,
    ResponderReply,
    ResponderRequest,
    build_responder,
)
from flowcli.errors import (
    ExpressionError,
    FlowcliError,
    ResponderError,
    SessionBusyError,
    SessionStateError,
)
from flowcli.flows.snapshot import FlowSnapshot, Step, parse_snapshot

if TYPE_CHECKING:
    from flowcli.engine.breakpoints import Breakpoints, UpcomingStep

# Statuses at which `auto` stops (a failed session can be resumed, but not driven on).
TERMINAL_STATUSES = (*store.ENDED_STATUSES, "failed")
DEFAULT_RETRIES = 2
# Lease on a claimed step = responder timeout plus this margin.
LEASE_MARGIN_SECONDS = 30.0


_STATM_FD: int | None = None


def resident_memory_mb() -> float | None:
    """This process's resident memory, cheaply: /proc/self/statm, kept open and re-read."""
    global _STATM_FD
    try:
        if _STATM_FD is None:
            _STATM_FD = os.open("/proc/self/statm", os.O_RDONLY)
        pages = int(os.pread(_STATM_FD, 128, 0).split()[1])
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

    def preload(self, keys: set[str]) -> None:
        """Read now the loaded names among ``keys`` (so an evaluation reads nothing)."""
        for key in keys & self._loaders.keys():
            self[key]

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
    from flowcli.sandbox.names import MessageView

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


# Stands in for the log id in the loop state until the row is inserted (advance() is
# decided first so the log row is written once, complete).
_PENDING_LOG_ID = -1
# Stands in for the new message's id when no condition reads it.
_PENDING_MESSAGE_ID = -1
# How often the exit and end conditions are evaluated again because another session's
# message took the id they were evaluated with (each retry is rare; several, rarer).
_MESSAGE_ID_TRIES = 20


class _Stale(Exception):
    """Internal: the session moved between an attempt's read and its write; read again."""


class _MessageIdTaken(Exception):
    """Internal: the new message did not get the id its conditions were evaluated with."""


def _stamp(row: SessionRow) -> tuple[Any, ...]:
    """What must be unchanged for a decision read from ``row`` to hold when it is written.
    The version alone would do on flowcli's own writes; MRC leaves it as it is."""
    return (
        row.version,
        row.executed_steps_count,
        row.current_step_id,
        row.current_round,
        row.status,
        row.lease_owner,
    )


@dataclass
class _Verdict:
    """What the exit and end conditions said about the new message, before it is written."""

    exit_met: bool | None
    end_met: bool
    error: str | None
    message_id: int | None  # the id they saw; None when they do not read messages


@dataclass
class _Prepared:
    row: SessionRow
    snapshot: FlowSnapshot
    state: EngineState
    plan: StepPlan
    names: _LazyNames
    roles_snapshot: dict[str, Any]
    execution_order: int
    started_at: datetime
    t0: float
    tx: StepTx
    condition_value: bool | None = None
    context_ids: list[int] = field(default_factory=list)
    context_views: list[Any] = field(default_factory=list)


class SessionRunner:
    """Runs the steps of one session, caching what does not change between steps.

    It keeps one DBAPI connection for its lifetime (``close()`` returns it), and
    remembers the last execution order it wrote with the session version that write
    produced: while the version is unchanged no one else has written, so the order
    need not be read again.
    """

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
        self._raw: Any = None
        self._tx: StepTx | None = None
        self._known_order: tuple[int | None, int] | None = None
        self._state_cache: tuple[tuple[str | None, int | None], EngineState] | None = None
        self._conventions: Conventions | None = None
        # A worker holds its claim on the session between steps: each write renews it.
        self.hold_lease: float | None = None
        self._vars_cache: tuple[str | None, dict[str, Any]] | None = None
        # Why a claimed step's result was dropped, once its row is closed.
        self._claim_lost: FlowcliError | None = None

    # --- connection -------------------------------------------------------------------

    def _step_tx(self) -> StepTx:
        if self._tx is None:
            with translated(self.db):
                self._raw = self.db.engine.raw_connection()
                self._tx = StepTx(
                    self._raw.driver_connection,
                    self.db.engine.dialect.name,
                    busy_timeout=self.db.busy_timeout,
                )
        return self._tx

    def close(self) -> None:
        if self._raw is not None:
            try:
                self._raw.close()
            finally:
                self._raw = None
                self._tx = None

    def __enter__(self) -> SessionRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

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
        """One attempt at the next step, logged whatever its outcome.

        Read, then evaluate (condition, template, exit and end conditions) with no
        transaction open, then write in one short transaction that first checks the
        session is still where it was read: if another process moved it meanwhile, the
        attempt reads and evaluates again (within the busy timeout), so a step runs once.
        """
        # Read before anything else: it takes a connection of its own.
        _ = self.conventions
        tx = self._step_tx()
        patience = LockPatience(self.db.busy_timeout)
        while True:
            try:
                with translated(self.db):
                    result = self._attempt_once(tx, retries_left)
            except _Stale:
                self._known_order = None
                self._role_ids = None
                if not patience.wait():
                    raise SessionBusyError(
                        f"session {self.session_id} was changed by another process meanwhile "
                        f"(again and again for {self.db.busy_timeout:g} s); nothing was "
                        "written: try again, or raise --busy-timeout"
                    ) from None
                continue
            except BaseException:
                self._known_order = None
                self._role_ids = None
                raise
            if result is not None:
                return result

    def _attempt_once(self, tx: StepTx, retries_left: int) -> StepResult | None:
        """Read, evaluate, write; None when housekeeping wrote and the session must be read
        again. Raises _Stale when the session moved between the read and the write."""
        read = self._read(tx)
        if not isinstance(read, _Prepared):
            return read
        prep = read
        responder = self._responder_for(prep.snapshot)
        # --- evaluation: no transaction is open from here until the write ---
        condition_error = self._evaluate_condition(prep)
        if condition_error is not None:
            with tx.transaction():
                self._fence(tx, prep)
                return self._record_failure(
                    prep,
                    None,
                    condition_error,
                    retryable=False,
                    retries_left=retries_left,
                    retry_after=None,
                    claim_log_id=None,
                )
        if prep.condition_value is False:
            with tx.transaction():
                self._fence(tx, prep)
                return self._record_skip(prep)
        if responder.is_local:
            reply, error = self._call(responder, prep)
            return self._finish(tx, prep, responder, reply, error, retries_left)
        with tx.transaction():
            self._fence(tx, prep)
            claim_log_id = self._claim(prep, responder)
        # The network call may take as long as it needs: only the claim is held.
        reply, error = self._call(responder, prep)
        return self._finish(
            tx, prep, responder, reply, error, retries_left, (claim_log_id, prep.row.version)
        )

    def _finish(
        self,
        tx: StepTx,
        prep: _Prepared,
        responder: Responder,
        reply: ResponderReply | None,
        error: ResponderError | None,
        retries_left: int,
        claim: tuple[int, int | None] | None = None,
    ) -> StepResult:
        """Evaluate the exit and end conditions over the new message, then record the
        step. The conditions see the id the message will get; should another session's
        message take that id first, they are evaluated again for the next one."""
        claim_log_id = claim[0] if claim is not None else None
        for _ in range(_MESSAGE_ID_TRIES):
            verdict = None
            if error is None and reply is not None:
                verdict = self._evaluate_after(prep, reply)
            try:
                with tx.transaction():
                    if claim is None:
                        self._fence(tx, prep)
                    elif not self._claim_holds(tx, prep, claim):
                        lost = True
                    else:
                        lost = False
                    if claim is None or not lost:
                        return self._record(
                            prep, responder, reply, error, retries_left, claim_log_id, verdict
                        )
            except _MessageIdTaken:
                continue
            # The claimed row was closed above (committed): say why the result was dropped.
            assert self._claim_lost is not None
            raise self._claim_lost
        raise SessionBusyError(
            f"session {self.session_id}: new messages kept arriving while this step's "
            "conditions were evaluated; nothing was written: try again"
        )

    def _claim_holds(self, tx: StepTx, prep: _Prepared, claim: tuple[int, int | None]) -> bool:
        """Inside the record transaction: is the claim on the step still ours? When not,
        the claimed row is closed as discarded (and ``_claim_lost`` says why truthfully)."""
        claim_log_id, claimed_version = claim
        row = tx.load_session(self.session_id)
        status = row.status or "not_started"
        if status != "running":
            # Cancelled (or paused, or ended) while the responder answered: the result is
            # dropped, and the claimed row closed now rather than left running for ever.
            tx.update_log(
                claim_log_id,
                {
                    "status": "failed",
                    "result_type": "error",
                    "error_message": f"discarded: the session was {status} while this "
                    "step waited for its responder",
                    "completed_at": utcnow(),
                },
                only_running=True,
            )
            if row.lease_owner == self.owner:
                tx.update_session(row, {"lease_owner": None, "lease_expires_at": None})
            self._known_order = None
            self._claim_lost = SessionStateError(
                f"session {self.session_id} was {status} while this step waited for its "
                "responder; the step's result was discarded"
            )
            return False
        if row.lease_owner != self.owner or row.version != claimed_version:
            if row.lease_owner is None:
                why = "its claim was dropped meanwhile (by a doctor repair or a status change)"
            elif row.lease_owner != self.owner:
                why = f"its lease expired and another process ({row.lease_owner}) took over"
            else:
                why = "the session was changed by another process meanwhile"
            raise SessionBusyError(
                f"session {self.session_id}: this process lost its claim on the step "
                f"({why}); its result was discarded"
            )
        if (row.executed_steps_count or 0) == prep.execution_order:
            prep.row = row
            return True
        # MRC ignores flowcli's claims: it ran a step meanwhile.
        self._abandon_claim(tx, row, claim_log_id)
        self._known_order = None
        self._claim_lost = SessionBusyError(
            f"session {self.session_id}: another engine (MRC) ran a step while this "
            "process waited for its responder; its result was discarded"
        )
        return False

    # --- preparation ----------------------------------------------------------------

    @property
    def conventions(self) -> Conventions:
        """How this database's rows are written (its owner's conventions), read once."""
        if self._conventions is None:
            self._conventions = conventions_for(self.db.owner)
        return self._conventions

    def _state(self, tx: StepTx, row: SessionRow, snapshot: FlowSnapshot) -> EngineState:
        """The engine state: the cached JSON while its stamp matches the session row
        (parsed once per distinct text, usually the one this runner wrote), else
        rebuilt from the log (flowcli.engine.replay)."""
        key = (row.engine_state, row.executed_steps_count)
        cached = self._state_cache
        if cached is None or cached[0] != key:
            state, _rebuilt = current_state(
                tx,
                row,
                snapshot,
                rounds_end_on_summary=self.conventions.rounds_end_on_summary,
            )
            cached = (key, state)
            self._state_cache = cached
        return cached[1].copy()

    def _vars(self, row: SessionRow) -> dict[str, Any]:
        cached = self._vars_cache
        if cached is None or cached[0] != row.variables:
            cached = (row.variables, row.vars())
            self._vars_cache = cached
        return cached[1]

    def _snapshot(self, row: SessionRow) -> FlowSnapshot:
        if self._snapshot_cache is None or self._snapshot_cache[0] != row.flow_snapshot:
            self._snapshot_cache = (row.flow_snapshot, parse_snapshot(row.flow_snapshot))
            self._responder = None
        return self._snapshot_cache[1]

    def _responder_for(self, snapshot: FlowSnapshot) -> Responder:
        if self._responder is None:
            self._responder = build_responder(self.options, snapshot.responder)
        return self._responder

    def _execution_order(self, tx: StepTx, row: SessionRow) -> int:
        count = row.executed_steps_count or 0
        if self._known_order == (row.version, count):
            # Our own last write: it set the count to its order, and no one wrote since.
            return count + 1
        return tx.next_execution_order(row.id, count)

    def _read(self, tx: StepTx) -> _Prepared | StepResult | None:
        """Everything the step's decision is computed from, read without the write lock.

        Housekeeping that needs no evaluation (recovering an abandoned claim, starting the
        session, failing it at ``max_steps``) is written here in a short transaction of
        its own; then None asks the caller to read again.
        """
        try:
            row = tx.load_session(self.session_id, lock=False)
            snapshot = self._snapshot(row)
            responder = self._responder_for(snapshot)
            check_runnable(row)
            now = utcnow()
            if self._needs_housekeeping(tx, row, snapshot, now):
                tx.end_read()
                with tx.transaction():
                    return self._housekeep(tx, tx.load_session(self.session_id), snapshot)
            prep = self._prepare(tx, row, snapshot, now)
            self._load_context(prep)
            prep.names.preload(self._names_needed(prep, responder))
            return prep
        finally:
            tx.end_read()

    def _needs_housekeeping(
        self, tx: StepTx, row: SessionRow, snapshot: FlowSnapshot, now: datetime
    ) -> bool:
        held = claim_state(row, now, self.owner)
        if held == "abandoned":
            return True
        if (
            held == "none"
            and self._known_order != (row.version, row.executed_steps_count or 0)
            and tx.running_log_ids(row.id)
        ):
            # A running row with no claim (MRC's, or a step whose session was cancelled
            # and whose process then stopped): nothing will finish it. Not looked for
            # after our own last write, since then no one else has written.
            return True
        if row.status == "not_started" or row.current_step_id is None:
            return True
        return max_steps_reached(snapshot, row.executed_steps_count or 0) is not None

    def _housekeep(self, tx: StepTx, row: SessionRow, snapshot: FlowSnapshot) -> StepResult | None:
        """Inside a write transaction: recover, start, or stop at ``max_steps``."""
        check_runnable(row)
        state = self._state(tx, row, snapshot)
        recover_abandoned(tx, row, state, utcnow(), self.owner)
        if row.status == "not_started" or row.current_step_id is None:
            first = snapshot.first_step()
            tx.update_session(
                row,
                {
                    "status": "running",
                    "current_step_id": first.id,
                    "current_round": 1,
                    "executed_steps_count": row.executed_steps_count or 0,
                },
            )
        reason = max_steps_reached(snapshot, row.executed_steps_count or 0)
        if reason is not None:
            tx.update_session(row, {"status": "failed", "error_reason": reason[:500]})
            return StepResult(
                session=row.position(),
                step=None,
                log=None,
                message=None,
                failed=True,
                error=reason,
                session_failed=True,
            )
        return None

    def _prepare(
        self, tx: StepTx, row: SessionRow, snapshot: FlowSnapshot, now: datetime
    ) -> _Prepared:
        state = self._state(tx, row, snapshot)
        executed = row.executed_steps_count or 0
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
            "vars": self._vars(row),
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
            execution_order=self._execution_order(tx, row),
            started_at=now,
            t0=time.perf_counter(),
            tx=tx,
        )
        prep.names = _LazyNames(
            values,
            {
                "last": lambda: _view(prep.tx.last_message_view(sid)),
                "messages": lambda: [
                    _view(r) for r in prep.tx.message_views(sid, scope="all", round_=0)
                ],
            },
        )
        return prep

    def _fence(self, tx: StepTx, prep: _Prepared) -> None:
        """Inside the write transaction: the session must be where the decision was read
        (the version is the fencing token; on MRC's databases, whose writes leave it
        unchanged, the count and position are compared too)."""
        row = tx.load_session(self.session_id)
        if _stamp(row) != _stamp(prep.row):
            raise _Stale
        prep.row = row

    def _names_needed(self, prep: _Prepared, responder: Responder) -> set[str]:
        """The names the step's expressions and template read, so the ones read from the
        database are read now, before the evaluation (not during it)."""
        from flowcli.sandbox.expressions import compile_expression

        needed: set[str] = set(getattr(responder, "names_used", ()))
        exit_cond = prep.plan.step.exit_condition or {}
        exit_expr = exit_cond.get("expr") if exit_cond.get("type") == "expression" else None
        if exit_cond.get("type") == "llm_accept_flag":
            needed.add("last")
        for source in (prep.plan.step.condition, exit_expr, prep.snapshot.end_condition):
            if isinstance(source, str):
                with contextlib.suppress(ExpressionError):  # reported when evaluated
                    needed |= compile_expression(source).names_used
        return needed

    # --- evaluation (no transaction open) --------------------------------------------

    def _evaluate_condition(self, prep: _Prepared) -> str | None:
        """Evaluate the step's condition into ``prep.condition_value``; the error, if any."""
        cond = prep.plan.step.condition
        if cond is None:
            return None
        from flowcli.sandbox.expressions import compile_expression

        try:
            prep.condition_value = compile_expression(cond).evaluate_bool(prep.names)
        except ExpressionError as exc:
            return f"condition {cond!r}: {exc}"
        return None

    def _evaluate_after(self, prep: _Prepared, reply: ResponderReply) -> _Verdict:
        """The exit and end conditions over the names as the new message leaves them."""
        step = prep.plan.step
        message_id: int | None = None
        if self._after_reads_messages(prep):
            message_id = prep.tx.next_message_id()
            prep.tx.end_read()
        after = prep.names.with_new_message(
            _view(
                (
                    _PENDING_MESSAGE_ID if message_id is None else message_id,
                    step.speaker,
                    step.target,
                    reply.content,
                    self.conventions.section(step.task_type),
                    prep.plan.round,
                )
            ),
            # This execution is logged with its own number: the count it leaves.
            prep.execution_order,
        )
        exit_met, loop_error = self._exit_condition(step, after)
        end_met, end_error = (False, None)
        if loop_error is None:
            end_met, end_error = self._end_condition(prep.snapshot, after)
        return _Verdict(
            exit_met=exit_met,
            end_met=end_met,
            error=loop_error or end_error,
            message_id=message_id,
        )

    def _after_reads_messages(self, prep: _Prepared) -> bool:
        from flowcli.sandbox.expressions import compile_expression

        exit_cond = prep.plan.step.exit_condition or {}
        sources = [prep.snapshot.end_condition]
        if prep.plan.step.loop is not None and exit_cond.get("type") == "expression":
            sources.append(exit_cond.get("expr"))
        for source in sources:
            if isinstance(source, str):
                try:
                    if compile_expression(source).names_used & {"last", "messages"}:
                        return True
                except ExpressionError:
                    pass
        return False

    # --- condition, call, record ----------------------------------------------------------

    def _load_context(self, prep: _Prepared) -> None:
        step = prep.plan.step
        if step.context_scope not in ("none", "__TOPIC__"):
            n = step.context_param.get("n", 5)
            rows = prep.tx.message_views(
                prep.row.id,
                scope=step.context_scope,
                round_=prep.plan.round,
                n=n if isinstance(n, int) and not isinstance(n, bool) else 5,
            )
            prep.context_ids = [r[0] for r in rows]
            prep.context_views = [_view(r) for r in rows]
        if step.speaker not in self._role_prompts:
            # Only the network responders send the prompt; read it once per role.
            if self._responder is not None and not self._responder.is_local:
                _role_id, prompt = prep.tx.resolve_role(
                    step.speaker, prep.roles_snapshot, prep.row.id
                )
                self._role_prompts[step.speaker] = prompt
            else:
                self._role_prompts[step.speaker] = None

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

    def _claim(self, prep: _Prepared, responder: Responder) -> int:
        """Commit a ``running`` log row and a lease, so the network call runs unlocked."""
        timeout = getattr(responder, "timeout", 60.0) * (getattr(responder, "retries", 0) + 1)
        lease_until = utcnow() + timedelta(seconds=timeout + LEASE_MARGIN_SECONDS)
        log_id = prep.tx.insert_log(
            self._log_values(prep, {"status": "running", "result_type": None})
        )
        prep.tx.update_session(
            prep.row,
            {
                "lease_owner": self.owner,
                "lease_expires_at": lease_until,
                # The claimed row is an execution logged: MRC's next number is above it.
                "executed_steps_count": prep.execution_order,
                "engine_state": prep.state.copy().stamped(prep.execution_order).to_json(),
            },
        )
        self._remember_order(prep)
        return log_id

    def _abandon_claim(self, tx: StepTx, row: SessionRow, claim_log_id: int) -> None:
        """Our claimed row loses to a step another engine (MRC) ran meanwhile: it is
        marked failed and the claim released (the caller discards the result)."""
        tx.update_log(
            claim_log_id,
            {
                "status": "failed",
                "result_type": "error",
                "error_message": "discarded: another engine ran a step of this session "
                "while this process waited for its responder",
                "completed_at": utcnow(),
            },
        )
        tx.update_session(row, {"lease_owner": None, "lease_expires_at": None})

    def _lease_after_step(self, *, ended: bool) -> dict[str, Any]:
        """Release the step's claim, or renew the session claim a worker holds."""
        if self.hold_lease is None or ended:
            return {"lease_owner": None, "lease_expires_at": None}
        return {
            "lease_owner": self.owner,
            "lease_expires_at": utcnow() + timedelta(seconds=self.hold_lease),
        }

    def _remember_order(self, prep: _Prepared) -> None:
        self._known_order = (prep.row.version, prep.row.executed_steps_count or 0)

    def _log_values(self, prep: _Prepared, extra: dict[str, Any]) -> dict[str, Any]:
        plan = prep.plan
        context = {
            "round": plan.round,
            "step_order": plan.step.order,
            "loop_iteration": plan.loop_iteration,
            "attempt": plan.attempt,
            "executed_steps": prep.row.executed_steps_count or 0,
            "vars": prep.names["vars"],
            "loops": prep.state.loops_json(),
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
            "completed_at": utcnow(),
            "duration_ms": int((time.perf_counter() - prep.t0) * 1000),
        }

    def _record_skip(self, prep: _Prepared) -> StepResult:
        decision = advance(
            prep.snapshot,
            prep.plan,
            prep.state,
            log_id=_PENDING_LOG_ID,
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
        log_id = self._write(prep, decision, None, None, data, values)
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
        prep: _Prepared,
        responder: Responder,
        reply: ResponderReply | None,
        error: ResponderError | None,
        retries_left: int,
        claim_log_id: int | None,
        verdict: _Verdict | None,
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
        roles = self._session_roles(prep)
        speaker_sr = self._ensure_role(prep, roles, step.speaker)
        if not step.target:
            target_sr = None
        elif conventions.creates_target_role:
            target_sr = self._ensure_role(prep, roles, step.target)
        else:
            # MRC names a target only through the session's mapping, and never fails on it.
            target_sr = roles.get(step.target)
        if conventions.replies_to_newest:
            newest = prep.tx.last_message_view(prep.row.id)
            reply_to = newest[0] if newest else None
        else:
            reply_to = prep.context_ids[-1] if prep.context_ids else None
        message_values = {
            "session_id": prep.row.id,
            "speaker_session_role_id": speaker_sr,
            "target_session_role_id": target_sr,
            "reply_to_message_id": reply_to,
            "content": reply.content,
            "content_summary": content_summary(reply.content),
            "round_index": prep.plan.round,
            "section": conventions.section(step.task_type),
            "created_at": utcnow(),
        }
        message_id = prep.tx.insert_message({"id": verdict.message_id, **message_values})
        if verdict.message_id is not None and message_id != verdict.message_id:
            raise _MessageIdTaken
        message = {
            "id": message_id,
            **message_values,
            "speaker": step.speaker,
            "target": step.target,
        }
        exit_met, end_met = verdict.exit_met, verdict.end_met
        decision = advance(
            prep.snapshot,
            prep.plan,
            prep.state,
            log_id=_PENDING_LOG_ID,
            ran=True,
            exit_condition_met=exit_met,
            end_condition_met=end_met,
            rounds_end_on_summary=conventions.rounds_end_on_summary,
        )
        data = {
            "message_id": message_id,
            "responder": responder.describe(),
            "tokens": reply.tokens,
            "model": reply.model,
            "exit_condition": exit_met,
            "end_condition": end_met,
            "decision": decision.reason,
        }
        values = self._log_values(
            prep,
            {
                "status": "completed",
                "result_type": decision.loop_result or "success",
                "loop_check_result": decision.loop_check_result,
                **self._finish_values(prep),
            },
        )
        log_id = self._write(prep, decision, message, claim_log_id, data, values)
        return StepResult(
            session=prep.row.position(),
            step=step,
            log={"id": log_id, **values},
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
            from flowcli.sandbox.expressions import compile_expression

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
        from flowcli.sandbox.expressions import compile_expression

        try:
            return compile_expression(cond).evaluate_bool(names), None
        except ExpressionError as exc:
            return False, f"end condition {cond!r}: {exc}"

    def _session_roles(self, prep: _Prepared) -> dict[str, int]:
        if self._role_ids is None:
            self._role_ids = prep.tx.session_role_ids(prep.row.id)
        return self._role_ids

    def _ensure_role(self, prep: _Prepared, known: dict[str, int], ref: str) -> int:
        """The session_roles id for ``ref``, created (as MRC did, by role name) when missing."""
        if ref not in known:
            role_id, _prompt = prep.tx.resolve_role(ref, prep.roles_snapshot, prep.row.id)
            known[ref] = prep.tx.insert_session_role(prep.row.id, ref, role_id)
        return known[ref]

    def _write(
        self,
        prep: _Prepared,
        decision: Advance,
        message: dict[str, Any] | None,
        claim_log_id: int | None,
        data: dict[str, Any],
        log_values: dict[str, Any],
    ) -> int:
        """Write the log row (complete, once) and the session's new position."""
        data["next_step_id"] = decision.next_step.id if decision.next_step else None
        data["next_round"] = decision.next_round
        data["finished"] = decision.finished
        log_values["result_data"] = bounded_dumps(data)
        if claim_log_id is None:
            log_id = prep.tx.insert_log(log_values)
        else:
            log_id = claim_log_id
            prep.tx.update_log(
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
        decision.state.replace_log_id(_PENDING_LOG_ID, log_id)
        order = prep.execution_order
        values: dict[str, Any] = {
            "current_step_id": decision.next_step.id if decision.next_step else None,
            "current_round": decision.next_round,
            # Every logged execution counts, so MRC's next number (count + 1) is free.
            "executed_steps_count": order,
            "engine_state": decision.state.stamped(order).to_json(),
            **self._lease_after_step(ended=decision.finished),
            "error_reason": None,
        }
        if decision.finished:
            values["status"] = "finished"
            values["ended_at"] = utcnow()
            if self.conventions.keeps_last_step:
                values["current_step_id"] = prep.plan.step.id
        prep.tx.update_session(prep.row, values)
        self._remember_order(prep)
        return log_id

    def _record_failure(
        self,
        prep: _Prepared,
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
        if claim_log_id is None:
            log_id = prep.tx.insert_log(values)
        else:
            log_id = claim_log_id
            prep.tx.update_log(
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
            # A failed attempt is an execution logged: it counts (MRC numbers above it).
            "executed_steps_count": prep.execution_order,
            "engine_state": state.stamped(prep.execution_order).to_json(),
            **self._lease_after_step(ended=final),
        }
        if final:
            reason = (
                f"step {prep.plan.step.order} failed after {prep.plan.attempt} attempt(s): "
                f"{message}"
            )
            session_values["status"] = "failed"
            session_values["error_reason"] = reason[:500]
        prep.tx.update_session(prep.row, session_values)
        self._remember_order(prep)
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


def check_runnable(row: SessionRow) -> None:
    status = row.status or "not_started"
    if status == "finished":
        raise SessionStateError(f"session {row.id} is finished; there is no next step")
    if status in ("cancelled", "terminated"):
        raise SessionStateError(f"session {row.id} was {status}")
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
    with SessionRunner(db, session_id, options) as runner:
        return runner.run_step(retries=retries, backoff=backoff, sleep=sleep, on_attempt=on_attempt)


def step_report(db: Database, result: StepResult) -> dict[str, Any]:
    """What one attempt did, as run-next prints it: the session's position, the log row
    with every column (read back as committed) and the message, or null."""
    log = None
    message = None
    with db.read() as conn:
        if result.log is not None:
            log = store.fetch_log(conn, result.log["id"])
        if result.message is not None:
            message = store.fetch_message(conn, result.message["id"])
            if message is not None:
                message["speaker"] = result.message.get("speaker")
                message["target"] = result.message.get("target")
    session = {k: result.session.get(k) for k in store.SESSION_POSITION_COLUMNS}
    return {"session": session, "log": log, "message": message}


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
    # Where a breakpoint (or a declined --step) stopped the run: the step it stopped
    # before, and the breakpoint's kind and reason.
    stopped_before: dict[str, Any] | None = None
    breakpoint: dict[str, Any] | None = None


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
    breakpoints: Breakpoints | None = None,
    before_step: Callable[[UpcomingStep], bool] | None = None,
    resume_from_break: bool = False,
) -> AutoSummary:
    """Run the session until it finishes, fails for good, or a stop condition holds.

    ``breakpoints`` stop the run before a matching step; ``before_step`` is asked before
    each step and stops the run by returning False. With ``resume_from_break`` the first
    step runs without a breakpoint check (the run continues from where one stopped it).
    Neither costs anything when not given.
    """
    from flowcli.db.schema import require_schema

    require_schema(db)
    t0 = time.perf_counter()
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
    first = True
    stopped_before: dict[str, Any] | None = None
    hit: dict[str, Any] | None = None

    def count_attempt(result: StepResult) -> None:
        if result.failed:
            failures.append(result)
        if on_step is not None:
            on_step(result)

    try:
        with SessionRunner(db, session_id, options) as runner:
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
                if breakpoints or before_step is not None:
                    from flowcli.engine.breakpoints import check_before_step

                    check = check_before_step(
                        db, session_id, None if resume_from_break and first else breakpoints
                    )
                    if check.hit is not None and check.upcoming is not None:
                        reason = "breakpoint"
                        stopped_before = check.upcoming.describe()
                        hit = {"kind": check.hit.kind, "reason": check.hit.reason}
                        break
                    if (
                        before_step is not None
                        and check.upcoming is not None
                        and not before_step(check.upcoming)
                    ):
                        reason = "declined"
                        stopped_before = check.upcoming.describe()
                        break
                first = False
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
    except FlowcliError as exc:
        # The steps before the failure are committed: the summary says so (`auto --json`
        # prints it, then the error's one line).
        exc.data["summary"] = AutoSummary(
            session_id=session_id,
            steps_run=steps_run,
            failed_attempts=len(failures),
            final_status=position.get("status"),
            stop_reason="error",
            session=position,
            elapsed_s=round(time.perf_counter() - t0, 3),
            error=str(exc),
        )
        raise
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
        stopped_before=stopped_before,
        breakpoint=hit,
    )


__all__ = [
    "AutoSummary",
    "claim_state",
    "process_owner",
    "recover_abandoned",
    "FlowcliError",
    "SessionRunner",
    "StepResult",
    "auto",
    "run_next_step",
]
