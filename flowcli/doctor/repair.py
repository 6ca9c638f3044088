"""Repairs: a verified backup first, then every schema fix in one transaction.

The write lock is taken up front (``BEGIN IMMEDIATE``), so a database another process
is writing is reported as locked and left untouched instead of half-repaired. The
backup is read through a second connection while that lock keeps other writers out,
so it is exactly the state the repair starts from.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import StaticPool

from flowcli.db.connection import DatabaseTarget
from flowcli.db.revisions import HEAD_REVISION
from flowcli.doctor.findings import DoctorReport, Finding
from flowcli.errors import DatabaseUnavailableError
from flowcli.maintenance.safety_copy import make_backup, pg_backup


@dataclass
class RepairOutcome:
    backup: str | None = None
    actions: list[str] = field(default_factory=list)
    targeted: list[tuple[str, str]] = field(default_factory=list)


@lru_cache(maxsize=8)
def schema_at(revision: str) -> dict[str, frozenset[str]]:
    """flowcli's tables and columns as revision ``revision`` creates them."""
    from flowcli.db import migrate
    from flowcli.db.connection import Database, resolve_target
    from flowcli.db.inspection import existing_columns, existing_tables
    from flowcli.db.tables import METADATA

    with tempfile.TemporaryDirectory(prefix="flowcli-schema-") as tmp:
        db = Database(resolve_target(str(Path(tmp) / "at.db")))
        try:
            migrate.upgrade(db, revision)
            with db.read() as conn:
                tables = existing_tables(conn) & set(METADATA.tables)
                return {t: frozenset(existing_columns(conn, t)) for t in tables}
        finally:
            db.dispose()


def matching_revision(owned: dict[str, set[str]]) -> str | None:
    """The newest revision whose schema the database's flowcli tables match exactly."""
    from flowcli.db.revisions import KNOWN_REVISIONS
    from flowcli.db.tables import METADATA

    for revision in reversed(KNOWN_REVISIONS):
        schema = schema_at(revision)
        if set(schema) != set(owned):
            continue
        model_cols = {t: {c.name for c in METADATA.tables[t].columns} for t in schema}
        if all(owned[t] & model_cols[t] == set(schema[t]) for t in schema):
            return revision
    return None


def _open_repair_connection(target: DatabaseTarget, busy_timeout: float) -> Any:
    if target.is_sqlite and target.path is not None:
        path = target.path

        def connect() -> sqlite3.Connection:
            raw = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Table rebuilds must not cascade; the pragma works only outside a transaction.
            raw.execute("PRAGMA foreign_keys = OFF")
            return raw

        return create_engine("sqlite://", creator=connect, poolclass=StaticPool)
    return create_engine(target.url)


def _take_lock(conn: Connection, target: DatabaseTarget, busy_timeout: float) -> None:
    try:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(text("SELECT pg_advisory_xact_lock(726354)"))
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(busy_timeout * 1000)}ms'"))
    except Exception as exc:  # noqa: BLE001 - any failure to lock means: do nothing
        if "locked" in str(exc).lower() or "lock" in str(exc).lower():
            raise DatabaseUnavailableError(
                f"database {target.display} is locked by another process (waited "
                f"{busy_timeout:g}s); nothing was changed"
            ) from None
        raise


def apply_repairs(
    target: DatabaseTarget,
    report: DoctorReport,
    facts: dict[str, Any],
    *,
    fix_sessions: bool,
    backup: bool,
    busy_timeout: float,
) -> RepairOutcome:
    outcome = RepairOutcome()
    chosen = report.fixable(with_sessions=fix_sessions)
    outcome.targeted = [f.key for f in chosen]
    if not chosen:
        return outcome
    engine = _open_repair_connection(target, busy_timeout)
    try:
        with engine.connect() as conn:
            _take_lock(conn, target, busy_timeout)
            if backup:
                if target.is_sqlite and target.path is not None:
                    outcome.backup = str(make_backup(target.path, busy_timeout))
                else:
                    outcome.backup = str(pg_backup(target.url))
            wal = False
            try:
                for action in _schema_actions(conn, chosen, facts):
                    if action == "wal":
                        wal = True
                        continue
                    outcome.actions.append(action)
                for action in _session_actions(conn, chosen):
                    outcome.actions.append(action)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            if wal:
                conn.exec_driver_sql("PRAGMA journal_mode = WAL")
                outcome.actions.append("switched the journal mode to WAL")
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
    finally:
        engine.dispose()
    return outcome


def _alembic(conn: Connection, command_name: str, revision: str) -> None:
    from alembic import command

    from flowcli.db.migrate import alembic_config

    getattr(command, command_name)(alembic_config(conn), revision)


def _schema_actions(conn: Connection, chosen: list[Finding], facts: dict[str, Any]) -> list[str]:
    schema = [f for f in chosen if f.fix is not None and f.fix.applies_with == "schema"]
    if not schema:
        return []
    actions: list[str] = []
    wanted = {f.data.get("action") for f in schema}
    if "wal" in wanted:
        actions.append("wal")
    for finding in schema:
        if finding.data.get("action") == "sql" and finding.fix is not None:
            for statement in finding.fix.sql:
                conn.exec_driver_sql(statement)
            actions.append(finding.fix.description)
    state = (facts.get("revision") or {}).get("state")
    if "upgrade" in wanted and state in ("absent", "behind", None):
        _alembic(conn, "upgrade", "head")
        actions.append(f"upgraded to {HEAD_REVISION}")
    elif "adopt" in wanted:
        return actions + _adopt(conn)
    actions.extend(_create_missing(conn))
    return actions


def _adopt(conn: Connection) -> list[str]:
    """Adopt an unversioned database whose tables flowcli shares, by one path whatever
    its state: MRC's missing step log is first recreated as MRC defines it, so an intact
    copy and the bug report's copy both match revision 0001 and go the same way."""
    from flowcli.db.owner import OWNER_MRC, flowcli_additions, infer_owner, write_meta
    from flowcli.db.session_store import utcnow
    from flowcli.doctor.schema_drift import detect_schema_drift

    actions: list[str] = []
    owner = infer_owner(conn)
    restored = _restore_mrc_tables(conn) if owner == OWNER_MRC else []
    actions.extend(f"recreated {t} as MRC defines it" for t in restored)
    drift = detect_schema_drift(conn, owner)
    revision = matching_revision({t: set(cols) for t, cols in drift.columns.items()})
    if revision is not None:
        _alembic(conn, "stamp", revision)
        actions.append(f"stamped {revision} (its tables match that revision)")
        if revision != HEAD_REVISION:
            _alembic(conn, "upgrade", "head")
            actions.append(f"upgraded {revision} → {HEAD_REVISION}")
    else:
        _alembic(conn, "stamp", "head")
        actions.append(f"adopted: created the version table at {HEAD_REVISION}")
    actions.extend(_create_missing(conn, owner))
    write_meta(
        conn,
        {
            "owner": owner,
            "adopted_at": utcnow().isoformat(" ", "seconds"),
            "adopted_at_revision": revision or HEAD_REVISION,
            "added": flowcli_additions(conn),
            "restored": restored,
        },
    )
    actions.append(f"recorded the owner: {owner}")
    return actions


def _restore_mrc_tables(conn: Connection) -> list[str]:
    """Create the MRC tables flowcli knows that the database lacks, as MRC defines them."""
    from flowcli.db.inspection import existing_tables
    from flowcli.db.mrc_schema import MRC_TABLE_DDL

    if conn.dialect.name != "sqlite":
        return []
    present = existing_tables(conn)
    restored = []
    for table, statements in MRC_TABLE_DDL.items():
        if table in present:
            continue
        for statement in statements:
            conn.exec_driver_sql(statement)
        restored.append(table)
    return restored


def _create_missing(conn: Connection, owner: str | None = None) -> list[str]:
    """Create what the models have and the database lacks: tables, columns, indexes."""
    from flowcli.doctor.schema_drift import detect_schema_drift

    actions = []
    for finding in detect_schema_drift(conn, owner).findings:
        fix = finding.fix
        if fix is None or fix.risk != "safe" or fix.applies_with != "schema":
            continue
        for statement in fix.sql:
            conn.exec_driver_sql(statement)
        actions.append(f"{fix.description}")
    return actions


def _session_actions(conn: Connection, chosen: list[Finding]) -> list[str]:
    from flowcli.db.engine_state import EngineState
    from flowcli.db.session_store import utcnow

    actions = []
    now = utcnow()
    for finding in chosen:
        if finding.fix is None or finding.fix.applies_with != "sessions":
            continue
        sid = finding.data["session_id"]
        if finding.data["action"] == "release":
            state_raw = conn.execute(
                text("SELECT engine_state FROM sessions WHERE id = :id"), {"id": sid}
            ).scalar()
            running = conn.execute(
                text(
                    "UPDATE step_execution_logs SET status = 'failed', result_type = 'error', "
                    "error_message = :msg, completed_at = :now "
                    "WHERE session_id = :id AND status = 'running'"
                ),
                {
                    "id": sid,
                    "now": now,
                    "msg": "interrupted: the process running this step stopped (marked by "
                    "flowcli db doctor --fix-sessions); the step runs again",
                },
            ).rowcount
            state = EngineState.from_json(state_raw)
            state.failed_attempts += running
            conn.execute(
                text(
                    "UPDATE sessions SET lease_owner = NULL, lease_expires_at = NULL, "
                    "engine_state = :state, version = coalesce(version, 0) + 1, updated_at = :now "
                    "WHERE id = :id"
                ),
                {"id": sid, "state": state.to_json(), "now": now},
            )
            actions.append(
                f"session {sid}: {running} abandoned log row(s) marked failed, claim released"
            )
        elif finding.data["action"] == "renumber":
            conn.execute(
                text(
                    "UPDATE sessions SET executed_steps_count = :top, "
                    "version = coalesce(version, 0) + 1, updated_at = :now WHERE id = :id"
                ),
                {"id": sid, "top": finding.data["to"], "now": now},
            )
            actions.append(
                f"session {sid}: executed_steps_count set to {finding.data['to']} "
                "(MRC's next log row number is free)"
            )
        elif finding.data["action"] == "terminated":
            conn.execute(
                text(
                    "UPDATE sessions SET status = 'terminated', "
                    "version = coalesce(version, 0) + 1, updated_at = :now WHERE id = :id"
                ),
                {"id": sid, "now": now},
            )
            actions.append(f"session {sid}: status cancelled → terminated (MRC's word)")
        elif finding.data["action"] == "fail":
            reason = (str(finding.data.get("reason")) + " (marked by flowcli db doctor)")[:500]
            conn.execute(
                text(
                    "UPDATE sessions SET status = 'failed', error_reason = :reason, "
                    "lease_owner = NULL, lease_expires_at = NULL, "
                    "version = coalesce(version, 0) + 1, updated_at = :now WHERE id = :id"
                ),
                {"id": sid, "reason": reason, "now": now},
            )
            actions.append(f"session {sid}: marked failed ({reason})")
    return actions


__all__ = ["RepairOutcome", "apply_repairs", "matching_revision", "schema_at"]
