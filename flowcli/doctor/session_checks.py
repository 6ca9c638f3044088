"""The doctor's checks of the sessions' state: claims left by a killed process, running
sessions whose last execution failed, current steps missing from the snapshot, orphan
log rows, and sessions MRC could not continue.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import text

from flowcli.db.leases import claim_live
from flowcli.doctor.findings import CheckResult, Finding, Fix
from flowcli.doctor.registry import (
    DoctorContext,
    check,
    drift_of,
    from_findings,
    owner_of,
    result,
)

# --- application state ------------------------------------------------------------------


def _state_ready(ctx: DoctorContext, *columns: str) -> str | None:
    drift = drift_of(ctx)
    need = {"sessions", "step_execution_logs"}
    if not need <= drift.owned_present:
        return "needs the sessions and step_execution_logs tables"
    have = drift.columns.get("sessions", set())
    missing = [c for c in columns if c not in have]
    if missing:
        return f"needs sessions.{missing[0]}"
    return None


def _now() -> datetime:
    from flowcli.db.session_store import utcnow

    return utcnow()


@check("stuck_sessions", "sessions left running by a killed process", "state")
def check_stuck_sessions(ctx: DoctorContext) -> CheckResult:
    blocked = _state_ready(ctx, "lease_owner", "lease_expires_at")
    if blocked:
        return result("stuck_sessions", "skipped", blocked)
    conn = ctx.require_conn()
    now = _now()
    rows = conn.execute(
        text(
            "SELECT s.id, s.lease_owner, s.lease_expires_at, "
            " (SELECT count(*) FROM step_execution_logs l WHERE l.session_id = s.id "
            "  AND l.status = 'running') AS running_logs "
            # A running log row is only written together with a claim (lease), so the
            # claimed sessions are the only candidates: no scan of the log table.
            "FROM sessions s WHERE s.lease_owner IS NOT NULL"
        )
    ).all()
    findings = []
    for sid, owner, expires, running in rows:
        if isinstance(expires, str):
            expires = datetime.fromisoformat(expires)
        if claim_live(owner, expires, now):
            continue  # a live claim: someone is running a step right now
        gone = expires is not None and expires > now  # unexpired, but its process is gone
        what = (
            f"{running} running log row(s)"
            if running
            else ("a claim whose process is gone" if gone else "an expired claim")
        )
        findings.append(
            Finding(
                "stuck_sessions",
                "warning",
                f"session {sid}",
                f"session {sid} has {what} left by {owner or 'a process'} that stopped mid-step; "
                "the next run recovers it, --fix-sessions marks it now",
                fix=Fix(
                    "safe",
                    "mark the abandoned log rows failed (interrupted) and release the "
                    "claim; the step runs again next time",
                    [
                        "UPDATE step_execution_logs SET status = 'failed' … "
                        "WHERE status = 'running'",
                        "UPDATE sessions SET lease_owner = NULL, lease_expires_at = NULL …",
                    ],
                    applies_with="sessions",
                ),
                data={"session_id": sid, "action": "release"},
            )
        )
    return from_findings("stuck_sessions", findings, f"{len(findings)} stuck")


@check("ownerless_running", "running log rows no process holds", "state")
def check_ownerless_running(ctx: DoctorContext) -> CheckResult:
    """A ``running`` log row in a session with no claim: MRC left it (MRC claims nothing),
    or ``session cancel`` dropped the claim of a step in flight and its process stopped.
    Nothing will ever finish it; stuck_sessions covers the rows under a dead claim."""
    blocked = _state_ready(ctx, "lease_owner")
    if blocked:
        return result("ownerless_running", "skipped", blocked)
    conn = ctx.require_conn()
    rows = conn.execute(
        text(
            "SELECT l.session_id, l.id FROM step_execution_logs l "
            "JOIN sessions s ON s.id = l.session_id "
            "WHERE l.status = 'running' AND s.lease_owner IS NULL "
            "ORDER BY l.session_id, l.id"
        )
    ).all()
    by_session: dict[int, list[int]] = {}
    for sid, log_id in rows:
        by_session.setdefault(int(sid), []).append(int(log_id))
    findings = [
        Finding(
            "ownerless_running",
            "warning",
            f"session {sid}",
            f"session {sid}: log row(s) {', '.join(map(str, ids))} are running but no process "
            "holds them (no claim: left by another engine, or by a step whose session was "
            "cancelled); the next run closes them, --fix-sessions closes them now",
            fix=Fix(
                "safe",
                "mark the running log rows failed (interrupted); the step runs again",
                ["UPDATE step_execution_logs SET status = 'failed' … WHERE status = 'running'"],
                applies_with="sessions",
            ),
            data={"session_id": sid, "action": "release", "log_ids": ids},
        )
        for sid, ids in by_session.items()
    ]
    return from_findings(
        "ownerless_running", findings, f"{len(rows)} row(s) in {len(findings)} session(s)"
    )


def _fail_session(
    name: str, severity: str, sid: int, message: str, *, reason: str, how: str
) -> Finding:
    """A finding whose safe fix marks session ``sid`` failed with ``reason`` (the repair
    writes it as ``error_reason``; `session resume` makes the session runnable again)."""
    return Finding(
        name,
        severity,
        f"session {sid}",
        message,
        fix=Fix(
            "safe",
            how,
            ["UPDATE sessions SET status = 'failed', error_reason = … "],
            applies_with="sessions",
        ),
        data={"session_id": sid, "action": "fail", "reason": reason},
    )


@check("failed_running", "running sessions whose last execution failed", "state")
def check_failed_running(ctx: DoctorContext) -> CheckResult:
    blocked = _state_ready(ctx, "lease_owner")
    if blocked:
        return result("failed_running", "skipped", blocked)
    conn = ctx.require_conn()
    rows = conn.execute(
        text(
            "SELECT s.id, l.error_message FROM sessions s JOIN step_execution_logs l "
            "ON l.session_id = s.id AND l.execution_order = (SELECT max(execution_order) "
            "FROM step_execution_logs WHERE session_id = s.id) "
            "WHERE s.status = 'running' AND l.status = 'failed' AND s.lease_owner IS NULL"
        )
    ).all()
    findings = [
        _fail_session(
            "failed_running",
            "warning",
            sid,
            f"session {sid} is running but its last execution failed "
            f"({(err or '').strip()[:120]}); "
            "its driver stopped between retries",
            reason=f"last execution failed: {err}",
            how="mark the session failed with that reason (`session resume` runs it again)",
        )
        for sid, err in rows
    ]
    return from_findings("failed_running", findings, f"{len(findings)} found")


@check("missing_current_step", "sessions whose current step is not in their snapshot", "state")
def check_missing_current_step(ctx: DoctorContext) -> CheckResult:
    blocked = _state_ready(ctx)
    if blocked:
        return result("missing_current_step", "skipped", blocked)
    conn = ctx.require_conn()
    findings = []
    rows = conn.execute(
        text(
            "SELECT id, current_step_id, flow_snapshot FROM sessions "
            "WHERE status IN ('running', 'paused') AND current_step_id IS NOT NULL"
        )
    )
    for sid, step_id, snapshot in rows:
        try:
            data = json.loads(snapshot) if snapshot else {}
        except ValueError:
            data = {}
        steps = data.get("steps", []) if isinstance(data, dict) else []
        ids = {s.get("id") for s in steps if isinstance(s, dict)}
        if step_id not in ids:
            findings.append(
                _fail_session(
                    "missing_current_step",
                    "error",
                    sid,
                    f"session {sid} is positioned on step {step_id}, which its flow snapshot does "
                    "not contain: it cannot run",
                    reason=f"current step {step_id} is not in the flow snapshot",
                    how="mark the session failed with the reason",
                )
            )
    return from_findings("missing_current_step", findings, f"{len(findings)} found")


@check("orphan_logs", "log rows pointing at missing sessions or steps", "state")
def check_orphan_logs(ctx: DoctorContext) -> CheckResult:
    blocked = _state_ready(ctx)
    if blocked:
        return result("orphan_logs", "skipped", blocked)
    conn = ctx.require_conn()
    # Both questions are answered without reading every log row, so the check costs
    # the same on a million executions as on a thousand: the session ids present in
    # the log are found by skipping along the (session_id, execution_order) index, and
    # a session's log rows only ever name steps of its own snapshot.
    orphan_sessions = [
        r[0]
        for r in conn.execute(
            text(
                "WITH RECURSIVE ids(id) AS ("
                " SELECT (SELECT min(session_id) FROM step_execution_logs)"
                " UNION ALL SELECT (SELECT min(session_id) FROM step_execution_logs"
                "  WHERE session_id > ids.id) FROM ids WHERE ids.id IS NOT NULL)"
                " SELECT id FROM ids WHERE id IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = ids.id)"
            )
        )
    ]
    no_session = 0
    for sid in orphan_sessions:
        no_session += (
            conn.execute(
                text("SELECT count(*) FROM step_execution_logs WHERE session_id = :sid"),
                {"sid": sid},
            ).scalar()
            or 0
        )
    no_step = 0
    if "flow_steps" in drift_of(ctx).owned_present:
        known = {r[0] for r in conn.execute(text("SELECT id FROM flow_steps"))}
        for sid, snapshot in conn.execute(text("SELECT id, flow_snapshot FROM sessions")):
            try:
                data = json.loads(snapshot) if snapshot else {}
            except ValueError:
                continue
            steps = data.get("steps", []) if isinstance(data, dict) else []
            missing = [
                int(s["id"])
                for s in steps
                if isinstance(s, dict) and s.get("id") is not None and s.get("id") not in known
            ]
            if missing:
                no_step += (
                    conn.execute(
                        text(
                            "SELECT count(*) FROM step_execution_logs WHERE session_id = :sid "
                            "AND step_id IN (" + ", ".join(str(m) for m in missing) + ")"
                        ),
                        {"sid": sid},
                    ).scalar()
                    or 0
                )
    findings = []
    if no_session:
        findings.append(
            Finding(
                "orphan_logs",
                "warning",
                "step_execution_logs.session_id",
                f"{no_session} log row(s) belong to sessions that no longer exist",
                fix=Fix(
                    "manual", "flowcli never deletes user data; delete them yourself if unwanted"
                ),
            )
        )
    if no_step:
        findings.append(
            Finding(
                "orphan_logs",
                "warning",
                "step_execution_logs.step_id",
                f"{no_step} log row(s) name steps that no longer exist",
                fix=Fix(
                    "manual", "flowcli never deletes user data; the rows keep their step_snapshot"
                ),
            )
        )
    return from_findings("orphan_logs", findings, f"{no_session + no_step} row(s)")


@check("cotenancy", "sessions MRC could not continue (MRC's databases)", "state")
def check_cotenancy(ctx: DoctorContext) -> CheckResult:
    from flowcli.db.owner import OWNER_MRC
    from flowcli.db.tables import UNIQUE_ORDER_INDEX

    if owner_of(ctx) != OWNER_MRC:
        return result("cotenancy", "ok", "flowcli owns this database")
    blocked = _state_ready(ctx)
    if blocked:
        return result("cotenancy", "skipped", blocked)
    conn = ctx.require_conn()
    findings: list[Finding] = []
    from sqlalchemy import inspect

    indexes = {ix["name"]: ix for ix in inspect(conn).get_indexes("step_execution_logs")}
    if UNIQUE_ORDER_INDEX in indexes:
        findings.append(
            Finding(
                "cotenancy",
                "error",
                UNIQUE_ORDER_INDEX,
                f"unique index {UNIQUE_ORDER_INDEX} on MRC's step_execution_logs: two "
                "concurrent MRC requests can number a log row alike, and MRC's step then "
                "fails with 'UNIQUE constraint failed' (the seed's failure)",
                fix=Fix(
                    "safe",
                    f"drop the unique index {UNIQUE_ORDER_INDEX} (flowcli's own; MRC's "
                    "idx_step_logs_session_execution_order stays)",
                    [f"DROP INDEX {UNIQUE_ORDER_INDEX}"],
                    applies_with="schema",
                ),
                data={"action": "sql"},
            )
        )
    rows = conn.execute(
        text(
            "SELECT s.id, coalesce(s.executed_steps_count, 0), m.top FROM sessions s JOIN "
            "(SELECT session_id, max(execution_order) AS top FROM step_execution_logs "
            "GROUP BY session_id) m ON m.session_id = s.id "
            "WHERE m.top > coalesce(s.executed_steps_count, 0)"
        )
    ).all()
    for sid, count, top in rows:
        findings.append(
            Finding(
                "cotenancy",
                "error",
                f"session {sid}",
                f"session {sid}: MRC numbers its next log row executed_steps_count + 1 = "
                f"{count + 1}, but log rows already go up to {top}: MRC's next step would "
                "collide with them",
                fix=Fix(
                    "safe",
                    f"set executed_steps_count to {top}, so MRC's next number is free",
                    [f"UPDATE sessions SET executed_steps_count = {top} WHERE id = {sid}"],
                    applies_with="sessions",
                ),
                data={"session_id": sid, "action": "renumber", "to": int(top)},
            )
        )
    for (sid,) in conn.execute(text("SELECT id FROM sessions WHERE status = 'cancelled'")):
        findings.append(
            Finding(
                "cotenancy",
                "warning",
                f"session {sid}",
                f"session {sid} is 'cancelled', a status MRC does not know (MRC's word for a "
                "forced stop is 'terminated')",
                fix=Fix(
                    "safe",
                    "set the status to terminated",
                    [f"UPDATE sessions SET status = 'terminated' WHERE id = {sid}"],
                    applies_with="sessions",
                ),
                data={"session_id": sid, "action": "terminated"},
            )
        )
    return from_findings(
        "cotenancy", findings, f"{len(findings)} found", "MRC can continue every session"
    )
