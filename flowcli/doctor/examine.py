"""Running the doctor: examine (read-only), then optionally repair and examine again.

Examination never writes: SQLite files are opened read-only (``mode=ro``), so even
the journal mode is left as found. ``run_doctor`` is what ``flowcli db doctor`` calls.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from flowcli.db.connection import DatabaseTarget
from flowcli.db.revisions import HEAD_REVISION

# Importing a module of checks registers them; registered_checks() orders them.
from flowcli.doctor import file_checks as _file_checks  # noqa: F401
from flowcli.doctor import schema_checks as _schema_checks  # noqa: F401
from flowcli.doctor import session_checks as _session_checks  # noqa: F401
from flowcli.doctor import storage as _storage  # noqa: F401
from flowcli.doctor.findings import CheckResult, DoctorReport
from flowcli.doctor.registry import DoctorContext, registered_checks
from flowcli.errors import DatabaseError, DoctorError, UsageError


@dataclass
class DoctorOptions:
    full: bool = False
    strict: bool = False
    fix: bool = False
    fix_sessions: bool = False
    dry_run: bool = False
    backup: bool = True
    busy_timeout: float = 5.0


def _readonly_engine(path: Path, busy_timeout: float) -> tuple[Any, Path | None]:
    """An engine on the file that cannot write it. Returns (engine, temp copy or None).

    A read-only connection cannot open a WAL database whose -shm file is gone (a crash
    can leave just the -wal); then the file and its WAL are examined as a private copy.
    """
    from flowcli.db.connection import looks_truncated, wal_needs_immutable_open

    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        immutable = wal_needs_immutable_open(path)
    except DatabaseError:
        immutable = False  # committed WAL changes without their -shm: the copy below
    wal = Path(f"{path}-wal")
    if not immutable and looks_truncated(path) and not (wal.exists() and wal.stat().st_size):
        # A cut-off file with no WAL to complete it: damaged, and nobody can be using it.
        # Read as immutable, so that SQLite (seeing a WAL-mode header) creates no -wal and
        # -shm beside a file the doctor promises to leave as it found it.
        immutable = True
    if immutable:
        # A WAL file in a folder nobody here can write: nothing can be writing it, and
        # SQLite cannot create its -shm index, so it is read as immutable.
        uri += "&immutable=1"

    def connect() -> sqlite3.Connection:
        raw = sqlite3.connect(uri, uri=True, timeout=busy_timeout, check_same_thread=False)
        raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        return raw

    try:
        probe = connect()
        probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        probe.close()
    except sqlite3.OperationalError as exc:
        wal = Path(str(path) + "-wal")
        if "unable to open" not in str(exc) or not wal.exists():
            raise
        tmp = Path(tempfile.mkdtemp(prefix="flowcli-doctor-"))
        shutil.copy2(path, tmp / path.name)
        shutil.copy2(wal, tmp / wal.name)
        copy = tmp / path.name
        engine = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            creator=lambda: sqlite3.connect(copy, timeout=busy_timeout, check_same_thread=False),
        )
        return engine, tmp
    return create_engine("sqlite://", creator=connect, poolclass=StaticPool), None


def _failed_check(spec: Any, target: DatabaseTarget, message: str) -> CheckResult:
    """A check that could not run is an error finding of its own, counted like any other."""
    from flowcli.doctor.findings import Finding

    # Inside the doctor, "run the doctor" is no advice: say what repairs a damaged file.
    message = message.replace(
        "; run `flowcli db doctor` to examine it",
        "; restore a backup, or salvage its rows with `sqlite3 FILE .recover`",
    )
    return CheckResult(
        spec.name,
        spec.title,
        spec.group,
        "error",
        message,
        [Finding(spec.name, "error", target.display, message)],
    )


def _unusable_file(target: DatabaseTarget) -> str | None:
    from flowcli.db.connection import check_database_path, read_file_head

    path = target.path
    if not target.is_sqlite or path is None:
        return None
    try:
        check_database_path(path)
        if path.exists():
            read_file_head(path, 100)
    except DatabaseError as exc:
        return exc.message
    return None


def examine(target: DatabaseTarget, options: DoctorOptions) -> tuple[DoctorReport, DoctorContext]:
    from flowcli.db.failures import describe_db_error
    from flowcli.errors import DatabaseBusyError

    ctx = DoctorContext(target=target, full=options.full)
    results: list[CheckResult] = []
    engine = None
    temp_copy: Path | None = None
    conn = None
    order = registered_checks()
    unusable = _unusable_file(target)
    if unusable is not None:
        # Not a file SQLite could open (a /proc file, an unreadable one): one error, and
        # never "empty … just new" for a file that merely reports a size of 0.
        ctx.unexaminable = unusable
        results.append(_failed_check(order[0], target, unusable))
    try:
        for spec in order[1:] if unusable is not None else order:
            if spec.sqlite_only and not ctx.is_sqlite:
                continue
            if ctx.unexaminable or ctx.stop_reason:
                why = ctx.unexaminable or ctx.stop_reason
                results.append(
                    CheckResult(spec.name, spec.title, spec.group, "skipped", f"skipped: {why}")
                )
                continue
            if spec.name not in ("file_access", "sqlite_header") and conn is None:
                try:
                    if ctx.is_sqlite and target.path is not None:
                        engine, temp_copy = _readonly_engine(target.path, options.busy_timeout)
                    else:
                        engine = create_engine(target.url)
                    conn = engine.connect()
                    ctx.conn = conn
                except Exception as exc:  # noqa: BLE001 - reported as the doctor's finding
                    error = describe_db_error(exc, f"database {target.display}")
                    ctx.unexaminable = error.message
                    results.append(_failed_check(spec, target, error.message))
                    continue
            started = time.perf_counter()
            try:
                results.append(spec.run(ctx))
                results[-1].duration_ms = round((time.perf_counter() - started) * 1000, 2)
            except Exception as exc:  # noqa: BLE001 - a check that cannot read says why
                error = describe_db_error(exc, f"database {target.display}")
                if isinstance(error, DatabaseBusyError) or "not a SQLite" in error.message:
                    ctx.unexaminable = error.message
                else:
                    ctx.stop_reason = error.message
                results.append(_failed_check(spec, target, error.message))
    finally:
        if conn is not None:
            conn.close()
        if engine is not None:
            engine.dispose()
        if temp_copy is not None:
            shutil.rmtree(temp_copy, ignore_errors=True)
    revision = ctx.facts.get("revision") or {"current": None, "head": HEAD_REVISION, "state": None}
    report = DoctorReport(
        database=target.display,
        revision=revision,
        checks=results,
        examinable=ctx.unexaminable is None,
        strict=options.strict,
    )
    if ctx.unexaminable:
        report.unresolved.append({"reason": ctx.unexaminable})
    return report, ctx


def run_doctor(
    target: DatabaseTarget,
    options: DoctorOptions,
    confirm: Callable[[DoctorReport], bool] | None = None,
) -> DoctorReport:
    """Examine; with ``fix``: back up, repair in one transaction, examine again.

    Raises DoctorError when a repair left a finding it targeted unresolved.
    """
    from flowcli.doctor.repair import apply_repairs

    if options.fix_sessions and not options.fix:
        options.fix = True
    report, ctx = examine(target, options)
    if not options.fix or not report.examinable:
        return report
    chosen = report.fixable(with_sessions=options.fix_sessions)
    if not chosen or options.dry_run:
        return report
    if ctx.facts.get("writable") is False:
        raise UsageError(f"{target.display} is read-only for this user: cannot repair it")
    if confirm is not None and not confirm(report):
        return report
    outcome = apply_repairs(
        target,
        report,
        ctx.facts,
        fix_sessions=options.fix_sessions,
        backup=options.backup,
        busy_timeout=options.busy_timeout,
    )
    after, _ctx = examine(target, options)
    after.backup = outcome.backup
    after.repairs = outcome.actions
    still = {f.key for f in after.findings}
    after.unresolved = [{"check": c, "object": o} for c, o in outcome.targeted if (c, o) in still]
    if after.unresolved:
        shown = ", ".join(f"{u['check']} {u['object']}" for u in after.unresolved)
        raise DoctorError(f"the repair did not resolve: {shown}", report=after)
    return after


def list_checks() -> list[dict[str, str]]:
    """What `db doctor --list-checks` shows: every check, in the order they run."""
    return [
        {
            "check": c.name,
            "group": c.group,
            "title": c.title,
            "applies_to": "SQLite" if c.sqlite_only else "all",
        }
        for c in registered_checks()
    ]
