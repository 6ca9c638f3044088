"""The doctor's checks of the file, the version, the schema and the sessions' state.

Each check looks at one thing and returns a CheckResult with findings; each registers
itself with flowcli.doctor.registry, which runs them in group order (file, version,
schema, state, storage). When a check marks the database unexaminable or damaged, the
checks after it are skipped, not run on bad ground.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from flowcli.db.connection import SQLITE_MAGIC
from flowcli.db.inspection import existing_tables, read_revisions
from flowcli.db.revisions import HEAD_REVISION, KNOWN_REVISIONS, VERSION_TABLE
from flowcli.db.schema_state import classify_revisions
from flowcli.doctor.findings import CheckResult, Finding, Fix
from flowcli.doctor.registry import (
    CheckFn,
    DoctorContext,
    check,
    drift_of,
    owner_of,
    result,
    status_of,
)

# --- the file ------------------------------------------------------------------------


@check("file_access", "file exists, readable, writable", "file", sqlite_only=True)
def check_file_access(ctx: DoctorContext) -> CheckResult:
    path = ctx.target.path
    if path is None:
        return result("file_access", "ok", "in-memory database")
    if path.is_dir():
        ctx.unexaminable = f"{path} is a directory, not a database file"
        return result(
            "file_access",
            "error",
            ctx.unexaminable,
            [Finding("file_access", "error", str(path), ctx.unexaminable)],
        )
    if not path.exists():
        ctx.unexaminable = f"{path} does not exist (`flowcli db upgrade` creates it at head)"
        return result(
            "file_access",
            "error",
            "missing",
            [Finding("file_access", "error", str(path), ctx.unexaminable)],
        )
    if not os.access(path, os.R_OK):
        ctx.unexaminable = f"cannot read {path}: permission denied"
        return result(
            "file_access",
            "error",
            "unreadable",
            [Finding("file_access", "error", str(path), ctx.unexaminable)],
        )
    size = path.stat().st_size
    ctx.facts["size"] = size
    findings = []
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    ctx.facts["writable"] = writable
    if not writable:
        findings.append(
            Finding(
                "file_access",
                "warning",
                str(path),
                "the file or its folder is read-only for this user: reading commands work, "
                "running steps and repairs do not",
            )
        )
    if size == 0:
        ctx.stop_reason = "empty file"
        findings.append(
            Finding(
                "file_access",
                "warning",
                str(path),
                "the file is empty (0 bytes): not corrupt, just new; flowcli creates its schema "
                "on first use",
                fix=Fix(
                    "safe",
                    "create flowcli's schema at head",
                    ["-- alembic upgrade head"],
                    applies_with="schema",
                ),
                data={"action": "upgrade"},
            )
        )
    return result(
        "file_access",
        status_of(findings),
        f"{size:,} bytes" + ("" if writable else ", read-only"),
        findings,
    )


@check("sqlite_header", "really a SQLite file", "file", sqlite_only=True)
def check_sqlite_header(ctx: DoctorContext) -> CheckResult:
    path = ctx.target.path
    if path is None:
        return result("sqlite_header", "ok", "in-memory")
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        ctx.unexaminable = f"{path} is not a SQLite database (unrecognised file header)"
        return result(
            "sqlite_header",
            "error",
            "not SQLite",
            [Finding("sqlite_header", "error", str(path), ctx.unexaminable)],
        )
    return result("sqlite_header", "ok", "SQLite format 3")


@check("integrity", "integrity (quick_check; --full: integrity_check)", "file")
def check_integrity(ctx: DoctorContext) -> CheckResult:
    conn = ctx.require_conn()
    if not ctx.is_sqlite:
        version = conn.execute(text("SELECT version()")).scalar()
        return result("integrity", "ok", f"connected: {str(version).split(',')[0]}")
    pragma = "integrity_check" if ctx.full else "quick_check"
    rows = [r[0] for r in conn.execute(text(f"PRAGMA {pragma}"))]
    if rows == ["ok"]:
        return result("integrity", "ok", f"{pragma}: ok")
    ctx.stop_reason = "the file is damaged"
    shown = "; ".join(str(r) for r in rows[:3]) + (" …" if len(rows) > 3 else "")
    return result(
        "integrity",
        "error",
        f"{pragma}: {len(rows)} problem(s)",
        [
            Finding(
                "integrity",
                "error",
                str(ctx.target.display),
                f"{pragma} reports: {shown}",
                fix=Fix(
                    "manual",
                    "restore a backup, or salvage rows with `sqlite3 DB .recover`; "
                    "flowcli does not rewrite a damaged file",
                ),
            )
        ],
    )


@check("foreign_keys", "foreign_key_check", "file", sqlite_only=True)
def check_foreign_keys(ctx: DoctorContext) -> CheckResult:
    conn = ctx.require_conn()
    rows = conn.execute(text("PRAGMA foreign_key_check")).all()
    if not rows:
        return result("foreign_keys", "ok", "no dangling references")
    counts: dict[tuple[str, str], int] = {}
    for table, _rowid, parent, _fkid in rows:
        counts[(table, parent)] = counts.get((table, parent), 0) + 1
    findings = [
        Finding(
            "foreign_keys",
            "warning",
            f"{table} → {parent}",
            f"{n} row(s) of {table} point at missing rows of {parent}",
            fix=Fix(
                "manual",
                "inspect them (`PRAGMA foreign_key_check`); flowcli never deletes user data",
            ),
        )
        for (table, parent), n in sorted(counts.items())
    ]
    return result("foreign_keys", "warning", f"{len(rows)} dangling reference(s)", findings)


@check("journal_mode", "journal mode", "file", sqlite_only=True)
def check_journal_mode(ctx: DoctorContext) -> CheckResult:
    conn = ctx.require_conn()
    mode = str(conn.execute(text("PRAGMA journal_mode")).scalar()).lower()
    ctx.facts["journal_mode"] = mode
    findings = []
    path = ctx.target.path
    wal = Path(str(path) + "-wal") if path else None
    summary = mode
    if wal is not None and wal.exists() and wal.stat().st_size > 0:
        summary += f", WAL file present ({wal.stat().st_size:,} bytes)"
    from flowcli.db.owner import OWNER_MRC

    if mode != "wal" and owner_of(ctx) == OWNER_MRC:
        # MRC's file, MRC's journal mode: switching it would leave -wal/-shm files beside
        # it for MRC to meet, and flowcli runs fine on a rollback journal.
        findings.append(
            Finding(
                "journal_mode",
                "info",
                "journal_mode",
                f"journal mode is {mode}, MRC's choice: flowcli leaves it as it is",
            )
        )
    elif mode != "wal":
        findings.append(
            Finding(
                "journal_mode",
                "warning",
                "journal_mode",
                f"journal mode is {mode}: readers and the writer block each other; flowcli "
                "switches databases to WAL",
                fix=Fix(
                    "safe", "switch to WAL", ["PRAGMA journal_mode = WAL"], applies_with="schema"
                ),
                data={"action": "wal"},
            )
        )
    return result("journal_mode", status_of(findings), summary, findings)


# --- flowcli's version table ------------------------------------------------------------


@check("version_table", f"flowcli's version table ({VERSION_TABLE})", "version")
def check_version_table(ctx: DoctorContext) -> CheckResult:
    from flowcli.db.tables import METADATA

    conn = ctx.require_conn()
    tables = existing_tables(conn)
    owned = tables & set(METADATA.tables)
    state = classify_revisions(read_revisions(conn))
    ctx.facts["owned_tables"] = owned
    info: dict[str, Any] = {"current": None, "head": HEAD_REVISION, "state": state.kind}
    ctx.facts["revision"] = info
    if state.kind == "absent":
        if not owned:
            return result(
                "version_table",
                "error",
                "absent: no flowcli tables yet",
                [
                    Finding(
                        "version_table",
                        "error",
                        VERSION_TABLE,
                        "unversioned database without flowcli's tables"
                        + (
                            " (it holds other applications' tables)"
                            if tables - {"sqlite_sequence"}
                            else ""
                        )
                        + ": flowcli cannot run on it yet",
                        fix=Fix(
                            "safe",
                            "create flowcli's tables at head (other tables untouched)",
                            ["-- alembic upgrade head"],
                            applies_with="schema",
                        ),
                        data={"action": "upgrade"},
                    )
                ],
            )
        return result(
            "version_table",
            "error",
            "absent: unversioned (foreign) database",
            [
                Finding(
                    "version_table",
                    "error",
                    VERSION_TABLE,
                    f"unversioned database that already has {len(owned)} of flowcli's tables (e.g. "
                    "MRC's own database): flowcli refuses to run on it until it is adopted",
                    fix=Fix(
                        "safe",
                        "adopt it: stamp the revision its tables match and upgrade, or add "
                        "flowcli's missing tables and columns and stamp head",
                        [f"-- create {VERSION_TABLE}", "-- alembic stamp/upgrade"],
                        applies_with="schema",
                    ),
                    data={"action": "adopt"},
                )
            ],
        )
    if state.kind == "several":
        revisions = list(state.rows or ())
        info["current"] = revisions
        return result(
            "version_table",
            "error",
            f"{len(revisions)} rows",
            [
                Finding(
                    "version_table",
                    "error",
                    VERSION_TABLE,
                    f"{VERSION_TABLE} has {len(revisions)} rows "
                    f"({', '.join(revisions) or 'none'}): "
                    "several heads or a damaged ledger",
                    fix=Fix(
                        "manual",
                        "decide which revision the schema is at, then "
                        "`flowcli db stamp REV` (the doctor does not guess)",
                    ),
                )
            ],
        )
    current = state.current
    info["current"] = current
    if state.kind == "head":
        return result("version_table", "ok", f"at head ({current})")
    if state.kind == "behind":
        return result(
            "version_table",
            "error",
            f"behind: {current} < {HEAD_REVISION}",
            [
                Finding(
                    "version_table",
                    "error",
                    VERSION_TABLE,
                    f"the database is at revision {current}, behind head {HEAD_REVISION}: commands "
                    "refuse to run until it is upgraded",
                    fix=Fix(
                        "safe",
                        f"upgrade {current} → {HEAD_REVISION}",
                        ["-- alembic upgrade head"],
                        applies_with="schema",
                    ),
                    data={"action": "upgrade"},
                )
            ],
        )
    ctx.facts["unknown_revision"] = True
    return result(
        "version_table",
        "error",
        f"unknown revision {current}",
        [
            Finding(
                "version_table",
                "error",
                VERSION_TABLE,
                f"revision {current} is not one this flowcli knows ({', '.join(KNOWN_REVISIONS)}): "
                "the database was migrated by a newer flowcli, or revisions were deleted",
                fix=Fix(
                    "manual",
                    "upgrade flowcli to the version that wrote it; stamping over an "
                    "unknown revision would hide a real schema difference",
                ),
            )
        ],
    )


@check("owner", "who owns the database, and what flowcli added", "version")
def check_owner(ctx: DoctorContext) -> CheckResult:
    from flowcli.db.owner import OWNER_MRC, flowcli_additions, read_meta

    conn = ctx.require_conn()
    owner = owner_of(ctx)
    meta = read_meta(conn) or {}
    recorded = "recorded" if meta.get("owner") else "judged from its tables"
    if owner != OWNER_MRC:
        return result("owner", "ok", f"flowcli ({recorded})")
    added = flowcli_additions(conn)
    ctx.facts["flowcli_additions"] = added
    restored = _json_list(meta.get("restored"))
    adopted = meta.get("adopted_at")
    detail = (
        "MRC owns this database: flowcli follows MRC's conventions and adds nothing MRC's "
        "code can violate (docs/mrc.md). "
        + (f"Adopted {adopted}. " if adopted else "Not adopted yet. ")
        + ("flowcli added: " + ", ".join(added) + ". " if added else "flowcli added nothing. ")
        + (
            "flowcli recreated MRC's " + ", ".join(restored) + " as MRC defines it."
            if restored
            else ""
        )
    ).strip()
    return result(
        "owner",
        "info",
        f"mrc ({recorded}{', adopted ' + adopted if adopted else ''}); "
        f"{len(added)} flowcli addition(s)",
        [Finding("owner", "info", "owner", detail)],
    )


def _json_list(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


# --- schema against the models ------------------------------------------------------------


def _schema_check(name: str, kinds: tuple[str, ...], ok_text: str) -> CheckFn:
    def run(ctx: DoctorContext) -> CheckResult:
        findings = [f for f in drift_of(ctx).findings if f.check in kinds]
        if ctx.facts.get("unknown_revision"):
            for f in findings:
                if f.fix is not None and f.fix.risk == "safe":
                    # Repairing against models older than the database could do harm.
                    f.fix = Fix("manual", "not repaired while the revision is unknown")
        if not findings:
            return result(name, "ok", ok_text)
        return result(name, status_of(findings), f"{len(findings)} found", findings)

    return run


check("missing_table", "tables the models need", "schema")(
    _schema_check("missing_table", ("missing_table",), "all present")
)
check("missing_column", "columns the models need", "schema")(
    _schema_check("missing_column", ("missing_column",), "all present")
)
check("column_mismatch", "types and nullability that matter", "schema")(
    _schema_check("column_mismatch", ("column_mismatch",), "as the models say")
)
check("missing_index", "indexes flowcli's queries need", "schema")(
    _schema_check("missing_index", ("missing_index",), "all present")
)
check("extra_objects", "other tables and columns (never touched)", "schema")(
    _schema_check("extra_objects", ("extra_table", "extra_column"), "none")
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


def claim_live(owner: str | None, expires: datetime | None, now: datetime) -> bool:
    from flowcli.engine.claims import claim_live as live

    return live(owner, expires, now)


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
    return result(
        "stuck_sessions",
        status_of(findings),
        f"{len(findings)} stuck" if findings else "none",
        findings,
    )


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
    return result(
        "ownerless_running",
        status_of(findings),
        f"{len(rows)} row(s) in {len(findings)} session(s)" if findings else "none",
        findings,
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
        Finding(
            "failed_running",
            "warning",
            f"session {sid}",
            f"session {sid} is running but its last execution failed "
            f"({(err or '').strip()[:120]}); "
            "its driver stopped between retries",
            fix=Fix(
                "safe",
                "mark the session failed with that reason (`session resume` runs it again)",
                ["UPDATE sessions SET status = 'failed', error_reason = … "],
                applies_with="sessions",
            ),
            data={"session_id": sid, "action": "fail", "reason": f"last execution failed: {err}"},
        )
        for sid, err in rows
    ]
    return result(
        "failed_running",
        status_of(findings),
        f"{len(findings)} found" if findings else "none",
        findings,
    )


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
                Finding(
                    "missing_current_step",
                    "error",
                    f"session {sid}",
                    f"session {sid} is positioned on step {step_id}, which its flow snapshot does "
                    "not contain: it cannot run",
                    fix=Fix(
                        "safe",
                        "mark the session failed with the reason",
                        ["UPDATE sessions SET status = 'failed', error_reason = … "],
                        applies_with="sessions",
                    ),
                    data={
                        "session_id": sid,
                        "action": "fail",
                        "reason": f"current step {step_id} is not in the flow snapshot",
                    },
                )
            )
    return result(
        "missing_current_step",
        status_of(findings),
        f"{len(findings)} found" if findings else "none",
        findings,
    )


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
    return result(
        "orphan_logs",
        status_of(findings),
        "none" if not findings else f"{no_session + no_step} row(s)",
        findings,
    )


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
    return result(
        "cotenancy",
        status_of(findings),
        f"{len(findings)} found" if findings else "MRC can continue every session",
        findings,
    )
