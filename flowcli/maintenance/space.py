"""``db size`` and ``db vacuum``: where the bytes are, and giving freed pages back.

Sizes come from SQLite's ``dbstat`` table (every b-tree's pages, a table's indexes
counted with it) or PostgreSQL's ``pg_total_relation_size``; rows are exact counts.
A prune deletes rows but leaves their pages free inside the file; ``VACUUM`` rewrites
the file without them, and a WAL checkpoint hands the space back to the disk.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

if TYPE_CHECKING:
    from flowcli.db.connection import Database

SESSION_TABLES = ("sessions", "session_roles", "messages", "step_execution_logs")


def _file_bytes(path: Path) -> int:
    total = 0
    for p in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += p.stat().st_size
    return total


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_tables(conn: Connection) -> tuple[dict[str, int | None], dict[str, int]]:
    names = [
        str(r[0])
        for r in conn.execute(
            text(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        )
    ]
    rows = {
        n: int(conn.execute(text(f"SELECT count(*) FROM {_quote(n)}")).scalar() or 0) for n in names
    }
    sizes: dict[str, int | None] = dict.fromkeys(names, None)
    try:
        owner = {
            str(name): str(tbl)
            for name, tbl in conn.execute(text("SELECT name, tbl_name FROM sqlite_master"))
        }
        found: dict[str, int] = {}
        for name, pgsize in conn.execute(
            text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
        ):
            table = owner.get(str(name), str(name))
            found[table] = found.get(table, 0) + int(pgsize or 0)
        sizes = {n: found.get(n, 0) for n in names}
    except Exception:  # noqa: BLE001 - SQLite built without dbstat: sizes stay unknown
        pass
    return sizes, rows


def _pg_tables(conn: Connection) -> tuple[dict[str, int | None], dict[str, int]]:
    names = [
        str(r[0])
        for r in conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "ORDER BY tablename"
            )
        )
    ]
    rows = {
        n: int(conn.execute(text(f"SELECT count(*) FROM {_quote(n)}")).scalar() or 0) for n in names
    }
    sizes: dict[str, int | None] = {
        n: int(
            conn.execute(
                text(
                    "SELECT pg_total_relation_size("
                    "quote_ident(current_schema()) || '.' || quote_ident(:t))"
                ),
                {"t": n},
            ).scalar()
            or 0
        )
        for n in names
    }
    return sizes, rows


def database_size(db: Database) -> dict[str, Any]:
    """Bytes and rows per table, free space, and bytes per session and per step."""
    with db.read() as conn:
        if db.is_sqlite:
            page_size = int(conn.execute(text("PRAGMA page_size")).scalar() or 0)
            pages = int(conn.execute(text("PRAGMA page_count")).scalar() or 0)
            free = int(conn.execute(text("PRAGMA freelist_count")).scalar() or 0)
            sizes, rows = _sqlite_tables(conn)
            total = _file_bytes(db.target.path) if db.target.path else page_size * pages
            free_bytes: int | None = free * page_size
            free_share: float | None = (free / pages) if pages else 0.0
        else:
            sizes, rows = _pg_tables(conn)
            total = int(
                conn.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0
            )
            free_bytes = free_share = None
    known = all(sizes.get(t) is not None for t in SESSION_TABLES if t in sizes)
    session_bytes = sum(int(sizes.get(t) or 0) for t in SESSION_TABLES) if known else None
    n_sessions = rows.get("sessions", 0)
    n_steps = rows.get("step_execution_logs", 0)
    log_bytes = sizes.get("step_execution_logs")
    return {
        "database": db.target.display,
        "bytes": total,
        "free_bytes": free_bytes,
        "free_share": round(free_share, 4) if free_share is not None else None,
        "tables": [
            {"table": name, "rows": rows[name], "bytes": sizes.get(name)} for name in sorted(rows)
        ],
        "sessions": n_sessions,
        "steps": n_steps,
        "bytes_per_session": round(session_bytes / n_sessions)
        if session_bytes and n_sessions
        else None,
        "bytes_per_step": round(log_bytes / n_steps) if log_bytes and n_steps else None,
    }


@dataclass
class VacuumResult:
    database: str
    bytes_before: int
    bytes_after: int
    elapsed_s: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "freed_bytes": max(0, self.bytes_before - self.bytes_after),
            "elapsed_s": round(self.elapsed_s, 3),
            "detail": self.detail,
        }


def vacuum(db: Database, *, full: bool = False) -> VacuumResult:
    """Rewrite the database without its free pages (PostgreSQL: VACUUM its tables)."""
    from flowcli.db.failures import translated

    started = time.perf_counter()
    if db.is_sqlite:
        path = db.target.path
        before = _file_bytes(path) if path else 0
        with translated(db):
            raw = db.engine.raw_connection()
            try:
                cur = raw.cursor()
                # Outside any transaction (VACUUM cannot run in one); it takes the write
                # lock for as long as the rewrite lasts, waiting the busy timeout for it.
                cur.execute("VACUUM")
                checkpoint = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                cur.close()
            finally:
                raw.close()
        after = _file_bytes(path) if path else 0
        detail = "VACUUM"
        if checkpoint and checkpoint[0]:
            detail += (
                "; a reader kept the WAL from being truncated (it shrinks at the next checkpoint)"
            )
        return VacuumResult(db.target.display, before, after, time.perf_counter() - started, detail)
    from flowcli.db.tables import OWNED_TABLES

    with translated(db), db.engine.connect() as conn:
        size = "SELECT pg_database_size(current_database())"
        before = int(conn.execute(text(size)).scalar() or 0)
        conn.rollback()
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        present = {
            str(r[0])
            for r in auto.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        }
        for name in OWNED_TABLES:
            if name in present:
                auto.exec_driver_sql(
                    f"VACUUM {'(FULL, ANALYZE)' if full else '(ANALYZE)'} {_quote(name)}"
                )
        after = int(auto.execute(text(size)).scalar() or 0)
    detail = (
        "VACUUM (FULL, ANALYZE) of flowcli's tables"
        if full
        else "VACUUM (ANALYZE) of flowcli's tables"
    )
    return VacuumResult(db.target.display, before, after, time.perf_counter() - started, detail)
