"""The doctor's checks of the file itself: it exists and can be read, it is really a
SQLite file, its integrity and foreign keys, its journal mode. SQLite only, except the
integrity check; a damaged or empty file stops the checks after it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from flowcli.db.connection import SQLITE_MAGIC
from flowcli.doctor.findings import CheckResult, Finding, Fix
from flowcli.doctor.registry import (
    DoctorContext,
    check,
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
