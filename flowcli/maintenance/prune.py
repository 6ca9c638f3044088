"""``db prune``: archive the selected sessions, verify the archive, delete in batches.

Each batch is a few whole sessions (``--batch`` rows, never splitting a session): their
rows are read, written to the archive as one gzip member, read back and verified, and
only then deleted in one short write transaction that first re-checks, under the lock,
that each session is still exactly what was archived. So a kill at any moment leaves
every session either whole in the database or whole in the archive and gone from the
database (possibly also still in the database: the restore skips those), and writers
such as ``flowcli auto`` wait for at most one batch's transaction.

What is deleted is what MRC's own session delete removes (the session, its session
roles, messages and step logs) and nothing else: no role, template or step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

from flowcli.db.session_store import utcnow
from flowcli.errors import DatabaseError, SessionStateError, UsageError
from flowcli.maintenance.archive import COUNTED, ArchiveWriter, read_session_records, record_counts
from flowcli.maintenance.selection import (
    CHILD_TABLES,
    PruneCriteria,
    SelectedSession,
    count_rows,
    estimate_bytes,
    in_clause,
    select_sessions,
)

if TYPE_CHECKING:
    from flowcli.db.connection import Database

DEFAULT_BATCH_ROWS = 500
MAX_BATCH_ROWS = 1_000_000


@dataclass
class PrunePlan:
    """What a prune would take; ``db prune --dry-run`` prints exactly this."""

    criteria: PruneCriteria
    sessions: list[SelectedSession]
    logs_only: bool
    archive_path: Path | None
    estimated_bytes: int
    now: datetime

    @property
    def rows(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNTED, 0)
        for s in self.sessions:
            if not self.logs_only:
                totals["sessions"] += 1
                for table in CHILD_TABLES:
                    totals[table] += s.rows.get(table, 0)
            else:
                totals["step_execution_logs"] += s.rows.get("step_execution_logs", 0)
        return totals

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "logs-only" if self.logs_only else "sessions",
            "criteria": self.criteria.describe(),
            "sessions": [
                {
                    "id": s.id,
                    "flow_id": s.flow_template_id,
                    "status": s.status,
                    "ended": s.ended,
                    "rows": s.rows,
                }
                for s in self.sessions
            ],
            "session_count": len(self.sessions),
            "rows": self.rows,
            "estimated_bytes": self.estimated_bytes,
            "archive": str(self.archive_path) if self.archive_path else None,
        }


@dataclass
class PruneProgress:
    sessions_done: int
    sessions_total: int
    rows_done: int
    rows_total: int


@dataclass
class PruneReport:
    mode: str
    sessions: list[int] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    # Archived but kept: changed while being pruned, or pointed at by another session.
    kept: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0
    archive: str | None = None
    manifest: dict[str, Any] | None = None
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "pruned_sessions": self.sessions,
            "session_count": len(self.sessions),
            "rows": self.rows,
            "kept": self.kept,
            "batches": self.batches,
            "archive": self.archive,
            "manifest": self.manifest,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def default_archive_path(
    db: Database, folder: Path | None = None, now: datetime | None = None
) -> Path:
    """``<db>.archive/<UTC timestamp>.jsonl.gz`` (a free name), or in ``folder``."""
    if folder is None:
        if db.target.path is not None:
            folder = db.target.path.with_name(db.target.path.name + ".archive")
        else:
            from sqlalchemy.engine import make_url

            name = make_url(db.url).database or "database"
            folder = Path.cwd() / f"{name}.archive"
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
    candidate = folder / f"{stamp}.jsonl.gz"
    n = 1
    while candidate.exists():
        candidate = folder / f"{stamp}-{n}.jsonl.gz"
        n += 1
    return candidate


def resolve_archive_path(
    db: Database, archive: Path | None, policy_folder: Path | None, now: datetime
) -> Path:
    """``--archive PATH``: a file to create, or an existing folder to create it in."""
    if archive is None:
        return default_archive_path(db, policy_folder, now)
    if archive.is_dir():
        return default_archive_path(db, archive, now)
    if archive.exists():
        raise UsageError(f"--archive {archive} already exists; choose a new file or a folder")
    if not archive.parent.is_dir():
        raise UsageError(f"--archive {archive}: folder {archive.parent} does not exist")
    return archive


def plan_prune(
    db: Database,
    criteria: PruneCriteria,
    *,
    logs_only: bool = False,
    archive_path: Path | None = None,
    now: datetime | None = None,
) -> PrunePlan:
    """Select the sessions and count their rows and bytes; writes nothing."""
    now = now or utcnow()
    with db.read() as conn:
        sessions = select_sessions(conn, criteria, now)
        count_rows(conn, sessions)
        if logs_only:
            # Nothing to drop from a session whose logs are already gone.
            sessions = [s for s in sessions if s.rows.get("step_execution_logs")]
        size = estimate_bytes(conn, sessions, logs_only=logs_only) if sessions else 0
    return PrunePlan(criteria, sessions, logs_only, archive_path, size, now)


def _batches(
    sessions: Sequence[SelectedSession], batch_rows: int, logs_only: bool
) -> list[list[SelectedSession]]:
    """Whole sessions grouped until a group holds ``batch_rows`` rows (a session bigger
    than that is a batch of its own: a session is never split)."""
    out: list[list[SelectedSession]] = []
    current: list[SelectedSession] = []
    rows = 0
    for s in sessions:
        size = s.rows.get("step_execution_logs", 0) if logs_only else s.row_total
        if current and rows + size > batch_rows:
            out.append(current)
            current, rows = [], 0
        current.append(s)
        rows += size
    if current:
        out.append(current)
    return out


def run_prune(
    db: Database,
    plan: PrunePlan,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    archive_header: dict[str, Any] | None = None,
    progress: Callable[[PruneProgress], None] | None = None,
) -> PruneReport:
    """Archive (unless ``plan.archive_path`` is None) and delete the planned sessions."""
    if not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise UsageError(f"--batch must be between 1 and {MAX_BATCH_ROWS:,} rows")
    started = time.perf_counter()
    report = PruneReport(mode="logs-only" if plan.logs_only else "sessions")
    writer: ArchiveWriter | None = None
    if plan.archive_path is not None and plan.sessions:
        header = {
            "created_at": plan.now.isoformat(sep=" "),
            "database": db.target.display,
            "dialect": "sqlite" if db.is_sqlite else db.engine.dialect.name,
            "logs_only": plan.logs_only,
            "criteria": plan.criteria.describe(),
            **(archive_header or {}),
        }
        writer = ArchiveWriter(plan.archive_path, header)
        report.archive = str(plan.archive_path)
    rows_total = sum(plan.rows.values())
    rows_done = 0
    done = 0
    try:
        for batch in _batches(plan.sessions, batch_rows, plan.logs_only):
            ids = [s.id for s in batch]
            with db.read() as conn:
                records = read_session_records(conn, ids, logs_only=plan.logs_only)
            if writer is not None and records:
                writer.write_batch(records)
            deleted, kept = _delete_batch(db, records, plan.logs_only)
            report.batches += 1
            report.kept.extend(kept)
            for record in records:
                sid = int(record["session"]["id"])
                if sid in deleted:
                    report.sessions.append(sid)
            for key, n in deleted_counts(records, deleted).items():
                report.rows[key] += n
            done += len(batch)
            rows_done += sum(
                (s.rows.get("step_execution_logs", 0) if plan.logs_only else s.row_total)
                for s in batch
            )
            if progress is not None:
                progress(
                    PruneProgress(done, len(plan.sessions), min(rows_done, rows_total), rows_total)
                )
    except BaseException:
        if writer is not None:
            # The batches written so far stay: each one verified before it was deleted.
            writer.close()
        raise
    if writer is not None:
        report.manifest = writer.finish({"finished_at": utcnow().isoformat(sep=" ")})
    report.elapsed_s = time.perf_counter() - started
    return report


def delete_session(
    db: Database, session_id: int, *, archive_path: Path | None, now: datetime | None = None
) -> PruneReport:
    """``session delete``: one session, archived and verified first (unless
    ``archive_path`` is None), then deleted exactly as ``db prune ID`` deletes it: in one
    transaction, only if it is still as archived and no other session's rows point at its
    rows. Raises SessionStateError, naming the archive, when it was kept."""
    plan = plan_prune(
        db, PruneCriteria(session_ids=[session_id]), archive_path=archive_path, now=now
    )
    report = run_prune(db, plan, archive_header={"command": "session delete"})
    if session_id not in report.sessions:
        why = report.kept[0]["reason"] if report.kept else "it no longer exists"
        kept_in = f"; the archive {report.archive} holds it as it was" if report.archive else ""
        raise SessionStateError(f"session {session_id} was not deleted: {why}{kept_in}")
    return report


def deleted_counts(records: Sequence[dict[str, Any]], deleted: set[int]) -> dict[str, int]:
    return record_counts([r for r in records if int(r["session"]["id"]) in deleted])


def _lock_sessions(conn: Connection, ids: Sequence[int]) -> None:
    """SQLite's BEGIN IMMEDIATE already holds the write lock; PostgreSQL locks the rows,
    which also holds off new children (their foreign key check needs a share lock)."""
    if conn.dialect.name != "sqlite":
        conn.execute(text(f"SELECT id FROM sessions WHERE id IN {in_clause(ids)} FOR UPDATE"))


def _current_counts(
    conn: Connection, ids: Sequence[int], tables: Sequence[str]
) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {sid: dict.fromkeys(tables, 0) for sid in ids}
    for table in tables:
        for sid, n in conn.execute(
            text(
                f"SELECT session_id, count(*) FROM {table} WHERE session_id IN {in_clause(ids)} "
                "GROUP BY session_id"
            )
        ):
            counts[int(sid)][table] = int(n)
    return counts


def _referenced_from_outside(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """Sessions of the batch whose rows another session's rows point at: {id: other}.

    flowcli and MRC only ever point within a session; a pointer across sessions came
    from elsewhere, and deleting its target would break (or silently null) it.
    """
    inside = in_clause(ids)
    # Driven from the batch's own rows (``t``, found by session id) to the rows pointing at
    # them (``o``, found through the pointer indexes): a cost per batch row, never a scan.
    # (SQLite keeps a CROSS JOIN's order; PostgreSQL plans it as an inner join.)
    checks = (
        (
            "SELECT t.session_id, o.session_id FROM step_execution_logs t "
            "CROSS JOIN step_execution_logs o "
            f"WHERE t.session_id IN {inside} AND o.parent_log_id = t.id "
            f"AND o.session_id NOT IN {inside}"
        ),
        (
            "SELECT t.session_id, o.session_id FROM messages t CROSS JOIN messages o "
            f"WHERE t.session_id IN {inside} AND o.reply_to_message_id = t.id "
            f"AND o.session_id NOT IN {inside}"
        ),
        (
            "SELECT t.session_id, o.session_id FROM session_roles t CROSS JOIN messages o "
            f"WHERE t.session_id IN {inside} AND o.speaker_session_role_id = t.id "
            f"AND o.session_id NOT IN {inside}"
        ),
        (
            "SELECT t.session_id, o.session_id FROM session_roles t CROSS JOIN messages o "
            f"WHERE t.session_id IN {inside} AND o.target_session_role_id = t.id "
            f"AND o.session_id NOT IN {inside}"
        ),
    )
    found: dict[int, int] = {}
    for sql in checks:
        for target, other in conn.execute(text(sql)):
            found.setdefault(int(target), int(other))
    return found


def _delete_batch(
    db: Database, records: Sequence[dict[str, Any]], logs_only: bool
) -> tuple[set[int], list[dict[str, Any]]]:
    """Delete the archived sessions that are still exactly as archived; the rest stay."""
    if not records:
        return set(), []
    ids = [int(r["session"]["id"]) for r in records]
    kept: list[dict[str, Any]] = []
    tables = ["step_execution_logs"] if logs_only else list(CHILD_TABLES)
    with db.write() as conn:
        _lock_sessions(conn, ids)
        result = conn.execute(text(f"SELECT * FROM sessions WHERE id IN {in_clause(ids)}"))
        keys = list(result.keys())
        rows = [dict(zip(keys, r, strict=True)) for r in result.fetchall()]
        now_rows = {int(r["id"]): r for r in rows}
        counts = _current_counts(conn, ids, tables)
        outside = {} if logs_only else _referenced_from_outside(conn, ids)
        doomed: list[dict[str, Any]] = []
        for record in records:
            sid = int(record["session"]["id"])
            archived_counts = record_counts([record])
            if now_rows.get(sid) != record["session"]:
                kept.append({"id": sid, "reason": "changed while it was being pruned"})
            elif any(counts[sid][t] != archived_counts[t] for t in tables):
                kept.append({"id": sid, "reason": "gained or lost rows while it was being pruned"})
            elif sid in outside:
                kept.append(
                    {"id": sid, "reason": f"rows of session {outside[sid]} point at its rows"}
                )
            else:
                doomed.append(record)
        if not doomed:
            return set(), kept
        doomed_ids = [int(r["session"]["id"]) for r in doomed]
        expected = record_counts(doomed)
        if logs_only:
            _summarise(conn, doomed)
        deleted_rows = _delete_rows(conn, doomed_ids, logs_only)
        for table, n in deleted_rows.items():
            if n != expected[table]:
                # Cannot happen under the lock; if it does, the transaction rolls back.
                raise DatabaseError(
                    f"deleting {table} of sessions {doomed_ids[:5]} removed {n} rows, "
                    f"{expected[table]} were archived; nothing of this batch was deleted"
                )
    return set(doomed_ids), kept


def _delete_rows(conn: Connection, ids: Sequence[int], logs_only: bool) -> dict[str, int]:
    inside = in_clause(ids)
    # Children first: a database whose foreign keys predate flowcli has no cascade.
    counts = {
        "step_execution_logs": conn.execute(
            text(f"DELETE FROM step_execution_logs WHERE session_id IN {inside}")
        ).rowcount
    }
    if logs_only:
        return counts
    counts["messages"] = conn.execute(
        text(f"DELETE FROM messages WHERE session_id IN {inside}")
    ).rowcount
    counts["session_roles"] = conn.execute(
        text(f"DELETE FROM session_roles WHERE session_id IN {inside}")
    ).rowcount
    counts["sessions"] = conn.execute(text(f"DELETE FROM sessions WHERE id IN {inside}")).rowcount
    return counts


def _summarise(conn: Connection, records: Sequence[dict[str, Any]]) -> None:
    """Write each session's per-step summary before its logs go (only flowcli's column)."""
    import json

    from flowcli.db.log_summary import load_summary, merge_summaries, summarise_logs

    now = utcnow()
    for record in records:
        session = record["session"]
        summary = merge_summaries(
            load_summary(session.get("log_summary")), summarise_logs(record["logs"], now)
        )
        conn.execute(
            text("UPDATE sessions SET log_summary = :summary WHERE id = :id"),
            {"summary": json.dumps(summary, separators=(",", ":")), "id": int(session["id"])},
        )
