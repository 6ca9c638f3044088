"""One step of a session, attempt by attempt (``SessionRunner``, ``run_next_step``).

Each attempt reads first, then evaluates (condition, template, exit and end
conditions) with no transaction open, then writes the log row, the message, any
session roles it needs and the session's new position in one short transaction that
checks the session is still where it was read (the session version is the fencing
token). A network responder is called between a claim (a ``running`` log row and a
lease, committed) and the record, which checks the claim is still ours. Transient
failures are retried with backoff (``run_step``). The writes themselves are
flowcli.engine.recording's; docs/engine.md describes the design.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flowcli.db.connection import Database
from flowcli.db.engine_state import EngineState
from flowcli.db.failures import translated
from flowcli.db.json_text import loads_json
from flowcli.db.session_row import SESSION_POSITION_COLUMNS, SessionRow, utcnow
from flowcli.db.step_tx import LockPatience, StepTx
from flowcli.engine import recording
from flowcli.engine.claims import claim_state, process_owner, recover_abandoned
from flowcli.engine.conventions import Conventions
from flowcli.engine.planner import max_steps_reached, plan_step
from flowcli.engine.recording import StepRecorder
from flowcli.engine.replay import current_state
from flowcli.engine.responders import (
    Responder,
    ResponderOptions,
    ResponderReply,
    ResponderRequest,
    build_responder,
)
from flowcli.engine.step_data import (
    DEFAULT_RETRIES,
    MESSAGE_ID_TRIES,
    PENDING_MESSAGE_ID,
    MessageIdTaken,
    Prepared,
    Stale,
    StepResult,
    Verdict,
)
from flowcli.engine.step_names import LazyNames, message_view
from flowcli.errors import (
    ExpressionError,
    FlowcliError,
    NotFoundError,
    ResponderError,
    SessionBusyError,
    SessionStateError,
)
from flowcli.flows.snapshot import FlowSnapshot, Step, parse_snapshot


class SessionRunner(StepRecorder):
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
        self._close_raw: Callable[[], None] | None = None
        self._tx: StepTx | None = None
        self._known_order: tuple[int | None, int] | None = None
        self._state_cache: tuple[tuple[str | None, int | None], EngineState] | None = None
        self._conventions: Conventions | None = None
        # A worker holds its claim on the session between steps: each write renews it.
        self.hold_lease: float | None = None
        self._vars_cache: tuple[str | None, dict[str, Any]] | None = None
        self._roles_cache: tuple[str | None, dict[str, Any]] | None = None
        self._newest_message = None
        self._all_messages = None
        self._row_written: SessionRow | None = None
        # Per step id of the current snapshot: (step, names needed, after reads messages).
        self._step_facts: dict[int, tuple[Step, frozenset[str], bool]] = {}
        self._planned_on_own_write = False
        # Why a claimed step's result was dropped, once its row is closed.
        self._claim_lost: FlowcliError | None = None

    # --- connection -------------------------------------------------------------------

    def _step_tx(self) -> StepTx:
        if self._tx is None:
            # The bare sqlite3 driver on a SQLite file (no SQLAlchemy), else SQLAlchemy's pool.
            raw, dialect, self._close_raw = self.db.step_connection()
            self._tx = StepTx(raw, dialect, busy_timeout=self.db.busy_timeout)
        return self._tx

    def close(self) -> None:
        if self._close_raw is not None:
            try:
                self._close_raw()
            finally:
                self._close_raw = None
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
        if not self.db.schema_checked:  # checked once per process, not per step
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
        patience: LockPatience | None = None  # the budget starts at the first collision
        while True:
            try:
                with translated(self.db):
                    result = self._attempt_once(tx, retries_left)
            except Stale:
                # A step planned on this runner's own last write is only stale when someone
                # wrote since: read again at once. A race with another writer waits first.
                raced = not self._planned_on_own_write
                self._forget_writes()
                if raced and patience is None:
                    patience = LockPatience(self.db.busy_timeout)
                if raced and patience is not None and not patience.wait():
                    raise SessionBusyError(
                        f"session {self.session_id} was changed by another process meanwhile "
                        f"(again and again for {self.db.busy_timeout:g} s); nothing was "
                        "written: try again, or raise --busy-timeout"
                    ) from None
                continue
            except BaseException:
                self._forget_writes()
                raise
            if result is not None:
                return result

    def _attempt_once(self, tx: StepTx, retries_left: int) -> StepResult | None:
        """Read, evaluate, write; None when housekeeping wrote and the session must be read
        again. Raises Stale when the session moved between the read and the write."""
        read = self._read(tx)
        if not isinstance(read, Prepared):
            return read
        prep = read
        responder = self._responder_for(prep.snapshot)
        # --- evaluation: no transaction is open from here until the write ---
        condition_error = self._evaluate_condition(prep)
        if condition_error is not None:
            with tx.transaction():
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
                return self._record_skip(prep)
        if responder.is_local:
            reply, error = self._call(responder, prep)
            return self._finish(tx, prep, responder, reply, error, retries_left)
        with tx.transaction():
            claim_log_id = self._claim(prep, responder)
        # The network call may take as long as it needs: only the claim is held.
        reply, error = self._call(responder, prep)
        return self._finish(
            tx, prep, responder, reply, error, retries_left, (claim_log_id, prep.row.version)
        )

    def _finish(
        self,
        tx: StepTx,
        prep: Prepared,
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
        if claim is not None:
            prep.now = utcnow()  # the answer came later than the step began
        for _ in range(MESSAGE_ID_TRIES):
            verdict = None
            if error is None and reply is not None:
                verdict = self._evaluate_after(prep, reply)
            try:
                with tx.transaction():
                    # Without a claim, the record's first write is the fence (it writes
                    # only if the session is as read); with one, the claim is checked.
                    if claim is None or self._claim_holds(tx, prep, claim):
                        return self._record(
                            prep, responder, reply, error, retries_left, claim_log_id, verdict
                        )
            except MessageIdTaken:
                continue
            # The claimed row was closed above (committed): say why the result was dropped.
            assert self._claim_lost is not None
            raise self._claim_lost
        raise SessionBusyError(
            f"session {self.session_id}: new messages kept arriving while this step's "
            "conditions were evaluated; nothing was written: try again"
        )

    def _claim_holds(self, tx: StepTx, prep: Prepared, claim: tuple[int, int | None]) -> bool:
        """Inside the record transaction: is the claim on the step still ours? When not,
        the claimed row is closed as discarded (and ``_claim_lost`` says why truthfully)."""
        claim_log_id, claimed_version = claim
        row = tx.load_session(self.session_id)
        status = row.status or "not_started"
        if status != "running":
            # Cancelled (or paused, or ended) while the responder answered: the result is
            # dropped, and the claimed row closed now rather than left running for ever.
            recording.close_log(
                tx,
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
                recording.move_session(tx, row, {"lease_owner": None, "lease_expires_at": None})
            self._forget_writes()
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
        self._forget_writes()
        self._claim_lost = SessionBusyError(
            f"session {self.session_id}: another engine (MRC) ran a step while this "
            "process waited for its responder; its result was discarded"
        )
        return False

    # --- preparation ----------------------------------------------------------------

    def _state(self, tx: StepTx, row: SessionRow, snapshot: FlowSnapshot) -> EngineState:
        """The engine state, the runner's own copy: see ``_shared_state``."""
        return self._shared_state(tx, row, snapshot).copy()

    def _shared_state(self, tx: StepTx, row: SessionRow, snapshot: FlowSnapshot) -> EngineState:
        """The engine state: the cached JSON while its stamp matches the session row
        (parsed once per distinct text, usually the one this runner wrote), else
        rebuilt from the log (flowcli.engine.replay). The cached object itself: read it,
        never change it (``advance`` and the records change copies)."""
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
        return cached[1]

    def _roles_snapshot(self, row: SessionRow) -> dict[str, Any]:
        """The session's roles snapshot, parsed once per distinct text."""
        cached = self._roles_cache
        if cached is None or cached[0] != row.roles_snapshot:
            parsed = loads_json(row.roles_snapshot, {})
            cached = (row.roles_snapshot, parsed if isinstance(parsed, dict) else {})
            self._roles_cache = cached
        return cached[1]

    def _vars(self, row: SessionRow) -> dict[str, Any]:
        cached = self._vars_cache
        if cached is None or cached[0] != row.variables:
            cached = (row.variables, row.vars())
            self._vars_cache = cached
        return cached[1]

    @property
    def known_snapshot(self) -> FlowSnapshot | None:
        """The flow snapshot of the last step read (None before the first)."""
        return self._snapshot_cache[1] if self._snapshot_cache else None

    def _snapshot(self, row: SessionRow) -> FlowSnapshot:
        if self._snapshot_cache is None or self._snapshot_cache[0] != row.flow_snapshot:
            self._snapshot_cache = (row.flow_snapshot, parse_snapshot(row.flow_snapshot))
            self._responder = None
            self._step_facts = {}
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

    def _read(self, tx: StepTx) -> Prepared | StepResult | None:
        """Everything the step's decision is computed from, read without the write lock.

        Housekeeping that needs no evaluation (recovering an abandoned claim, starting the
        session, failing it at ``max_steps``) is written here in a short transaction of
        its own; then None asks the caller to read again.
        """
        try:
            # The row as this runner's last step left it, when that step committed: not
            # read again (the write checks nobody moved it: update_session_if_unchanged).
            # Used once; any failure forgets it (_forget_writes).
            row = self._row_written
            self._row_written = None
            self._planned_on_own_write = row is not None
            if row is None:
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
            prep.names.preload(self._facts(prep, responder)[0])
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
            recording.move_session(
                tx,
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
            recording.move_session(tx, row, {"status": "failed", "error_reason": reason[:500]})
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
    ) -> Prepared:
        # Only read: a step's writes change copies (advance, the failure and claim records).
        state = self._shared_state(tx, row, snapshot)
        executed = row.executed_steps_count or 0
        step = snapshot.step(row.current_step_id)
        plan = plan_step(snapshot, step, row.current_round or 1, state)
        roles_snapshot = self._roles_snapshot(row)
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
        prep = Prepared(
            row=row,
            snapshot=snapshot,
            state=state,
            plan=plan,
            names=None,  # type: ignore[arg-type]  # set just below
            roles_snapshot=roles_snapshot,
            execution_order=self._execution_order(tx, row),
            started_at=now,
            t0=time.perf_counter(),
            tx=tx,
        )
        # The loaders refer to prep itself, so the names are set once it exists.
        prep.names = LazyNames(
            values,
            {
                "last": lambda: message_view(self._newest_view(prep)),
                "messages": lambda: [
                    message_view(r) for r in prep.tx.message_views(sid, scope="all", round_=0)
                ],
            },
        )
        return prep

    def _facts(self, prep: Prepared, responder: Responder) -> tuple[frozenset[str], bool]:
        """What a step's expressions need, worked out once per step of the snapshot (they
        depend on the step, the snapshot and its responder only): the names to read
        before evaluating, and whether the exit or end condition reads messages."""
        step = prep.plan.step
        facts = self._step_facts.get(step.id)
        if facts is None or facts[0] is not step:
            facts = (
                step,
                frozenset(self._names_needed(prep, responder)),
                self._after_reads_messages(prep),
            )
            self._step_facts[step.id] = facts
        return facts[1], facts[2]

    def _names_needed(self, prep: Prepared, responder: Responder) -> set[str]:
        """The names the step's expressions and template read, so the ones read from the
        database are read now, before the evaluation (not during it)."""
        needed: set[str] = set(getattr(responder, "names_used", ()))
        exit_cond = prep.plan.step.exit_condition or {}
        exit_expr = exit_cond.get("expr") if exit_cond.get("type") == "expression" else None
        if exit_cond.get("type") == "llm_accept_flag":
            needed.add("last")
        for source in (prep.plan.step.condition, exit_expr, prep.snapshot.end_condition):
            if isinstance(source, str):
                # Imported only for a flow with expressions: most steps have none.
                from flowcli.sandbox.expressions import compile_expression

                with contextlib.suppress(ExpressionError):  # reported when evaluated
                    needed |= compile_expression(source).names_used
        return needed

    # --- evaluation (no transaction open) --------------------------------------------

    def _evaluate_condition(self, prep: Prepared) -> str | None:
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

    def _evaluate_after(self, prep: Prepared, reply: ResponderReply) -> Verdict:
        """The exit and end conditions over the names as the new message leaves them."""
        step = prep.plan.step
        if (step.loop is None or step.exit_condition is None) and (
            prep.snapshot.end_condition is None
        ):
            # Neither condition applies (most steps): nothing to evaluate.
            return Verdict(exit_met=None, end_met=False, error=None, message_id=None)
        message_id: int | None = None
        if self._facts(prep, self._responder_for(prep.snapshot))[1]:
            message_id = prep.tx.next_message_id()
            prep.tx.end_read()
        after = prep.names.with_new_message(
            message_view(
                (
                    PENDING_MESSAGE_ID if message_id is None else message_id,
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
        return Verdict(
            exit_met=exit_met,
            end_met=end_met,
            error=loop_error or end_error,
            message_id=message_id,
        )

    def _after_reads_messages(self, prep: Prepared) -> bool:
        exit_cond = prep.plan.step.exit_condition or {}
        sources = [prep.snapshot.end_condition]
        if prep.plan.step.loop is not None and exit_cond.get("type") == "expression":
            sources.append(exit_cond.get("expr"))
        for source in sources:
            if isinstance(source, str):
                from flowcli.sandbox.expressions import compile_expression

                try:
                    if compile_expression(source).names_used & {"last", "messages"}:
                        return True
                except ExpressionError:
                    pass
        return False

    # --- condition, call, record ----------------------------------------------------------

    def _load_context(self, prep: Prepared) -> None:
        step = prep.plan.step
        if step.context_scope in ("all", "last_message"):
            # Usually extended by (or just) what this runner wrote last: not read again.
            if step.context_scope == "all":
                rows = self._every_message(prep)
            else:
                newest = self._newest_view(prep)
                rows = [newest] if newest is not None else []
            prep.context_ids = [r[0] for r in rows]
            prep.context_views = [message_view(r) for r in rows]
        elif step.context_scope not in ("none", "__TOPIC__"):
            n = step.context_param.get("n", 5)
            rows = prep.tx.message_views(
                prep.row.id,
                scope=step.context_scope,
                round_=prep.plan.round,
                n=n if isinstance(n, int) and not isinstance(n, bool) else 5,
            )
            prep.context_ids = [r[0] for r in rows]
            prep.context_views = [message_view(r) for r in rows]
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
        self, responder: Responder, prep: Prepared
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
    log_id = result.log["id"] if result.log is not None else None
    message_id = result.message["id"] if result.message is not None else None
    if db.direct_sqlite:
        # Read on the bare driver, typed as SQLAlchemy reads them: run-next on a SQLite file
        # imports no SQLAlchemy.
        from flowcli.db.direct_reads import fetch_row

        with db.sqlite_read() as cur:
            if log_id is not None:
                log = fetch_row(cur, "step_execution_logs", log_id)
                if log is None:
                    raise NotFoundError(f"log {log_id} does not exist")
            if message_id is not None:
                message = fetch_row(cur, "messages", message_id)
    else:
        from flowcli.db import session_store as store

        with db.read() as conn:
            if log_id is not None:
                log = store.fetch_log(conn, log_id)
            if message_id is not None:
                message = store.fetch_message(conn, message_id)
    if message is not None and result.message is not None:
        message["speaker"] = result.message.get("speaker")
        message["target"] = result.message.get("target")
    session = {k: result.session.get(k) for k in SESSION_POSITION_COLUMNS}
    return {"session": session, "log": log, "message": message}
