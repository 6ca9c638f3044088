"""Which sessions a prune takes, and how many rows and bytes they hold.

By default only ended sessions (finished, failed, cancelled, and MRC's ``terminated``)
are candidates; running and paused sessions are taken only when named by id, and never
while a process holds their claim. ``--keep-last N`` protects the newest N candidates
of each flow before ``--older-than`` is applied, so the two combine as "older than X,
but always keep the last N".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from flowcli.errors import NotFoundError, SessionBusyError, UsageError

# MRC writes `terminated` for a forced stop, flowcli `cancelled`: both have ended.
ENDED_STATUSES = ("finished", "failed", "cancelled", "terminated")
# Selected only by id: a filter must never sweep up a session someone may still run.
BY_ID_ONLY_STATUSES = ("running", "paused")
KNOWN_STATUSES = ("not_started", "running", "paused", *ENDED_STATUSES)
# The tables a session's rows live in, children first (the order they are deleted in).
CHILD_TABLES = ("step_execution_logs", "messages", "session_roles")
ID_CHUNK = 500
MAX_IDS = 100_000


@dataclass
class PruneCriteria:
    """What to prune. Either explicit ``session_ids`` or filters, not both."""

    session_ids: list[int] = field(default_factory=list)
    older_than: timedelta | None = None
    statuses: list[str] = field(default_factory=list)
    flows: list[int] = field(default_factory=list)
    keep_last: int | None = None

    @property
    def has_filters(self) -> bool:
        return bool(
            self.older_than is not None or self.statuses or self.flows or self.keep_last is not None
        )

    def validate(self) -> None:
        if self.session_ids and self.has_filters:
            raise UsageError(
                "give session ids or filters (--older-than, --status, --flow, --keep-last), "
                "not both"
            )
        if not self.session_ids and not self.has_filters:
            raise UsageError(
                "say what to prune: --older-than DURATION, --keep-last N, --status, --flow, "
                "session ids, or --policy"
            )
        if len(self.session_ids) > MAX_IDS:
            raise UsageError(f"at most {MAX_IDS:,} session ids at a time")
        for status in self.statuses:
            if status in BY_ID_ONLY_STATUSES:
                raise UsageError(
                    f"--status {status}: running and paused sessions are pruned only when "
                    "named by id (and never while a process runs their step)"
                )
            if status not in KNOWN_STATUSES:
                raise UsageError(
                    f"unknown status {status!r}; choose from "
                    f"{', '.join(s for s in KNOWN_STATUSES if s not in BY_ID_ONLY_STATUSES)}"
                )

    def describe(self) -> dict[str, Any]:
        return {
            "session_ids": self.session_ids,
            "older_than_s": self.older_than.total_seconds() if self.older_than else None,
            "statuses": self.statuses or (list(ENDED_STATUSES) if not self.session_ids else []),
            "flows": self.flows,
            "keep_last": self.keep_last,
        }


@dataclass
class SelectedSession:
    id: int
    flow_template_id: int | None
    status: str | None
    ended: datetime | None
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def row_total(self) -> int:
        return 1 + sum(self.rows.values())


def as_datetime(value: Any) -> datetime | None:
    """A stored timestamp (a datetime, or SQLite text in any ISO form), naive UTC."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None  # an unreadable time is never "old enough"
    if parsed.tzinfo is not None:
        from datetime import UTC

        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _chunks(ids: Sequence[int], size: int = ID_CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def in_clause(ids: Sequence[int]) -> str:
    """A literal ``(1, 2, 3)`` of integers (ints only, so nothing can be injected)."""
    return "(" + ", ".join(str(int(i)) for i in ids) + ")"


_SESSION_FIELDS = (
    "SELECT id, flow_template_id, status, ended_at, updated_at, created_at, "
    "lease_owner, lease_expires_at FROM sessions"
)


def select_sessions(
    conn: Connection, criteria: PruneCriteria, now: datetime
) -> list[SelectedSession]:
    """The sessions the criteria take, oldest end first (ids: in the order given)."""
    criteria.validate()
    if criteria.session_ids:
        return _by_ids(conn, criteria.session_ids, now)
    statuses = criteria.statuses or list(ENDED_STATUSES)
    sql = _SESSION_FIELDS + " WHERE "
    wanted = [s for s in statuses if s != "not_started"]
    conds = []
    params: dict[str, Any] = {}
    if wanted:
        names = ", ".join(f":s{i}" for i in range(len(wanted)))
        conds.append(f"status IN ({names})")
        params.update({f"s{i}": s for i, s in enumerate(wanted)})
    if "not_started" in statuses:
        conds.append("(status = 'not_started' OR status IS NULL)")
    sql += "(" + " OR ".join(conds) + ")"
    if criteria.flows:
        sql += " AND flow_template_id IN " + in_clause(criteria.flows)
    candidates = []
    for row in conn.execute(text(sql), params).mappings():
        ended = (
            as_datetime(row["ended_at"])
            or as_datetime(row["updated_at"])
            or as_datetime(row["created_at"])
        )
        candidates.append(
            SelectedSession(int(row["id"]), row["flow_template_id"], row["status"], ended)
        )
    # Newest first within each flow, so --keep-last protects the head of each list.
    candidates.sort(key=lambda s: (s.ended or datetime.min, s.id), reverse=True)
    if criteria.keep_last is not None:
        seen: dict[Any, int] = {}
        kept = []
        for s in candidates:
            seen[s.flow_template_id] = seen.get(s.flow_template_id, 0) + 1
            if seen[s.flow_template_id] > criteria.keep_last:
                kept.append(s)
        candidates = kept
    if criteria.older_than is not None:
        cutoff = now - criteria.older_than
        candidates = [s for s in candidates if s.ended is not None and s.ended < cutoff]
    candidates.reverse()
    return candidates


def _by_ids(conn: Connection, ids: list[int], now: datetime) -> list[SelectedSession]:
    unique = list(dict.fromkeys(ids))
    rows: dict[int, Any] = {}
    for chunk in _chunks(unique):
        for found in conn.execute(
            text(_SESSION_FIELDS + " WHERE id IN " + in_clause(chunk))
        ).mappings():
            rows[int(found["id"])] = found
    out = []
    for sid in unique:
        row = rows.get(sid)
        if row is None:
            raise NotFoundError(f"session {sid} does not exist; nothing was pruned")
        expires = as_datetime(row["lease_expires_at"])
        if row["lease_owner"] and expires is not None and expires > now:
            raise SessionBusyError(
                f"session {sid} is running a step right now (claimed by {row['lease_owner']}); "
                "pause or cancel it first; nothing was pruned"
            )
        ended = (
            as_datetime(row["ended_at"])
            or as_datetime(row["updated_at"])
            or as_datetime(row["created_at"])
        )
        out.append(SelectedSession(sid, row["flow_template_id"], row["status"], ended))
    return out


def count_rows(conn: Connection, sessions: list[SelectedSession]) -> None:
    """Fill each session's ``rows``: its log rows, messages and session roles."""
    by_id = {s.id: s for s in sessions}
    for s in sessions:
        s.rows = dict.fromkeys(CHILD_TABLES, 0)
    ids = list(by_id)
    for chunk in _chunks(ids):
        for table in CHILD_TABLES:
            result = conn.execute(
                text(
                    f"SELECT session_id, count(*) FROM {table} "
                    f"WHERE session_id IN {in_clause(chunk)} GROUP BY session_id"
                )
            )
            for sid, n in result:
                by_id[int(sid)].rows[table] = int(n)


def _value_bytes(conn: Connection, table: str, columns: list[str]) -> str:
    """SQL for the stored size of a row's values (an estimate of what deleting frees)."""
    if conn.dialect.name == "postgresql":
        return f"pg_column_size({table}.*)"
    return " + ".join(f'coalesce(length("{c}"), 0)' for c in columns)


def estimate_bytes(conn: Connection, sessions: list[SelectedSession], *, logs_only: bool) -> int:
    """About how many bytes the selected rows' values take (what a prune would free)."""
    from flowcli.db.inspection import existing_columns

    tables = ["step_execution_logs"] if logs_only else [*CHILD_TABLES, "sessions"]
    ids = [s.id for s in sessions]
    total = 0
    for table in tables:
        columns = sorted(existing_columns(conn, table))
        size = _value_bytes(conn, table, columns)
        key = "id" if table == "sessions" else "session_id"
        for chunk in _chunks(ids):
            value = conn.execute(
                text(f"SELECT sum({size}) FROM {table} WHERE {key} IN {in_clause(chunk)}")
            ).scalar()
            total += int(value or 0)
    return total
