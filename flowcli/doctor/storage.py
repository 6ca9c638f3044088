"""The doctor's storage check: free pages and a large log table, and the command that helps.

Kept in its own module (registered with the doctor's ``check`` decorator) so the
maintenance work stays out of the schema checks. It reads only bounded facts (page
counts, the log table's id span, a sample of its newest rows and, when the span says
the table may be large, the density of a few id ranges), never a count of every row, so
it costs the same on a million log rows as on a thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, text

from flowcli.doctor.findings import CheckResult, Finding, Fix
from flowcli.doctor.registry import DoctorContext, check, drift_of, result, status_of

# Free pages are worth giving back once they are a quarter of the file and not trivial.
FREE_SHARE_WARN = 0.25
FREE_BYTES_MIN = 16 * 1024 * 1024
# About 2.4 KB a row: a million executions are gigabytes, and every backup copies them.
LOG_ROWS_WARN = 1_000_000
LOG_BYTES_WARN = 1024**3
SUGGESTED_AGE = timedelta(days=30)
SAMPLE_ROWS = 200
SAMPLE_WINDOWS = 32
SAMPLE_WIDTH = 100


@dataclass
class StorageFacts:
    file_bytes: int | None = None
    free_bytes: int | None = None
    free_share: float | None = None
    log_rows: int | None = None
    log_bytes: int | None = None
    old_ended_sessions: int | None = None


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MB" if n < 1024**3 else f"{n / 1024**3:,.1f} GB"


def storage_findings(facts: StorageFacts) -> list[Finding]:
    """The warnings these facts deserve (a pure function: the thresholds live here)."""
    findings = []
    if (
        facts.free_share is not None
        and facts.free_bytes is not None
        and facts.free_share >= FREE_SHARE_WARN
        and facts.free_bytes >= FREE_BYTES_MIN
    ):
        findings.append(
            Finding(
                "storage",
                "warning",
                "free pages",
                f"{_mb(facts.free_bytes)} ({facts.free_share:.0%} of the file) are free pages "
                "left by deleted rows",
                fix=Fix("manual", "give them back to the disk: `flowcli db vacuum`"),
            )
        )
    rows, size = facts.log_rows or 0, facts.log_bytes or 0
    if rows >= LOG_ROWS_WARN or size >= LOG_BYTES_WARN:
        old = facts.old_ended_sessions
        which = (
            f"the {old:,} ended session(s) older than {SUGGESTED_AGE.days} days"
            if old
            else "old ended sessions"
        )
        findings.append(
            Finding(
                "storage",
                "warning",
                "step_execution_logs",
                f"the log table holds about {rows:,} rows ({_mb(size)})",
                fix=Fix(
                    "manual",
                    f"`flowcli db prune --older-than {SUGGESTED_AGE.days}d` archives and deletes "
                    f"{which} (`--dry-run` shows what first; `--logs-only` keeps the sessions "
                    "and drops only their step logs)",
                ),
            )
        )
    return findings


def _estimated_rows(conn: Connection, low: int, span: int) -> int:
    """Rows in the log table, from the density of ``SAMPLE_WINDOWS`` id ranges spread over
    its id span (range scans of the primary key: a fixed cost, whatever the size). A
    count of every row would cost the doctor a scan of a million-row index."""
    width = max(1, min(SAMPLE_WIDTH, span // SAMPLE_WINDOWS))
    seen = 0
    for i in range(SAMPLE_WINDOWS):
        start = low + (span * i) // SAMPLE_WINDOWS
        seen += int(
            conn.execute(
                text("SELECT count(*) FROM step_execution_logs WHERE id >= :a AND id < :b"),
                {"a": start, "b": start + width},
            ).scalar()
            or 0
        )
    return round(span * seen / (SAMPLE_WINDOWS * width))


def _log_facts(conn: Connection, facts: StorageFacts) -> None:
    # Two statements: SQLite answers a lone min() or max() from the primary key's ends,
    # but scans the whole table for both at once.
    low = conn.execute(text("SELECT min(id) FROM step_execution_logs")).scalar()
    high = conn.execute(text("SELECT max(id) FROM step_execution_logs")).scalar()
    if low is None or high is None:
        facts.log_rows, facts.log_bytes = 0, 0
        return
    span = int(high) - int(low) + 1
    if conn.dialect.name == "sqlite":
        size = (
            "coalesce(length(result_data), 0) + coalesce(length(step_snapshot), 0) + "
            "coalesce(length(context_snapshot), 0) + coalesce(length(error_message), 0) + 64"
        )
        avg = float(
            conn.execute(
                text(
                    f"SELECT avg({size}) FROM (SELECT * FROM step_execution_logs "
                    f"ORDER BY id DESC LIMIT {SAMPLE_ROWS})"
                )
            ).scalar()
            or 0
        )
        rows = span
        if span >= LOG_ROWS_WARN or span * avg >= LOG_BYTES_WARN:
            # The id span only bounds the count (pruned rows leave gaps).
            rows = _estimated_rows(conn, int(low), span)
        facts.log_rows, facts.log_bytes = rows, int(rows * avg)
    else:
        facts.log_rows = int(
            conn.execute(
                text(
                    "SELECT greatest(reltuples, 0)::bigint FROM pg_class "
                    "WHERE oid = to_regclass('step_execution_logs')"
                )
            ).scalar()
            or 0
        )
        facts.log_bytes = int(
            conn.execute(
                text("SELECT pg_total_relation_size(to_regclass('step_execution_logs'))")
            ).scalar()
            or 0
        )


def _old_ended(conn: Connection) -> int:
    from datetime import UTC, datetime

    from flowcli.maintenance.selection import ENDED_STATUSES, as_datetime

    cutoff = datetime.now(UTC).replace(tzinfo=None) - SUGGESTED_AGE
    count = 0
    names = ", ".join(f"'{s}'" for s in ENDED_STATUSES)
    for ended, updated, created in conn.execute(
        text(f"SELECT ended_at, updated_at, created_at FROM sessions WHERE status IN ({names})")
    ):
        when = as_datetime(ended) or as_datetime(updated) or as_datetime(created)
        if when is not None and when < cutoff:
            count += 1
    return count


def gather_facts(ctx: DoctorContext) -> StorageFacts:
    conn = ctx.require_conn()
    facts = StorageFacts()
    if ctx.is_sqlite:
        page_size = int(conn.execute(text("PRAGMA page_size")).scalar() or 0)
        pages = int(conn.execute(text("PRAGMA page_count")).scalar() or 0)
        free = int(conn.execute(text("PRAGMA freelist_count")).scalar() or 0)
        facts.file_bytes = page_size * pages
        facts.free_bytes = page_size * free
        facts.free_share = free / pages if pages else 0.0
    _log_facts(conn, facts)
    if (facts.log_rows or 0) >= LOG_ROWS_WARN or (facts.log_bytes or 0) >= LOG_BYTES_WARN:
        facts.old_ended_sessions = _old_ended(conn)
    return facts


@check("storage", "free pages and the log table's size", "storage")
def check_storage(ctx: DoctorContext) -> CheckResult:
    if "step_execution_logs" not in drift_of(ctx).owned_present:
        return result("storage", "skipped", "needs the step_execution_logs table")
    facts = gather_facts(ctx)
    ctx.facts["storage"] = facts
    findings = storage_findings(facts)
    summary = f"about {facts.log_rows or 0:,} log rows"
    if facts.free_bytes is not None:
        summary += f", {_mb(facts.free_bytes)} free"
    return result("storage", status_of(findings), summary, findings)


__all__ = ["StorageFacts", "check_storage", "storage_findings"]
