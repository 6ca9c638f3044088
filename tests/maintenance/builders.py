"""Many realistic ended sessions, fast: one real run, then copies made in SQL.

A prune test needs hundreds of sessions; running each through ``auto`` would take
minutes. ``clone_session`` copies a finished session's rows with shifted ids (every
reference inside the session shifted with them, as the engine would have written
them), each copy with its own creation time so no two are the same session.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.reliability.kill import create_session, flowcli, import_flow, loop_flow, session_state

TABLE_ORDER = ("sessions", "session_roles", "messages", "step_execution_logs")
# The columns of each table that hold an id of the same session's rows.
SHIFTED = {
    "sessions": {"id": "sessions"},
    "session_roles": {"id": "session_roles", "session_id": "sessions"},
    "messages": {
        "id": "messages",
        "session_id": "sessions",
        "speaker_session_role_id": "session_roles",
        "target_session_role_id": "session_roles",
        "reply_to_message_id": "messages",
    },
    "step_execution_logs": {
        "id": "step_execution_logs",
        "session_id": "sessions",
        "parent_log_id": "step_execution_logs",
    },
}


def finished_session(db: Path, loops: int = 2) -> int:
    """One session of the loop flow (2 × (loops + 1) + 1 steps), run to its end."""
    sid = create_session(db, import_flow(db, loop_flow(loops, f"prune source {loops}")))
    result = flowcli(db, "auto", str(sid), "--quiet")
    assert result.exit_code == 0, result.stderr
    assert session_state(db, sid)["status"] == "finished"
    return sid


def clone_session(db: Path, source: int, copies: int, *, status: str | None = None) -> list[int]:
    """``copies`` copies of session ``source``; their new ids."""
    con = sqlite3.connect(db)
    try:
        columns = {t: [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')] for t in TABLE_ORDER}
        where = {"sessions": "id = ?", **{t: "session_id = ?" for t in TABLE_ORDER[1:]}}
        bounds: dict[str, tuple[int, int, int]] = {}
        for table in TABLE_ORDER:
            lo, hi = con.execute(
                f"SELECT min(id), max(id) FROM {table} WHERE {where[table]}", (source,)
            ).fetchone()
            top = con.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
            bounds[table] = (lo or 0, hi or 0, top or 0)
        new_ids = []
        for c in range(copies):
            shift = {t: top + 1 + c * (hi - lo + 1) - lo for t, (lo, hi, top) in bounds.items()}
            for table in TABLE_ORDER:
                exprs = []
                for col in columns[table]:
                    target = SHIFTED[table].get(col)
                    if target is not None:
                        exprs.append(f'"{col}" + {shift[target]}')
                    elif table == "sessions" and col == "created_at":
                        # A copy is a session of its own: its own creation time.
                        exprs.append(
                            f"strftime('%Y-%m-%d %H:%M:%S', created_at, '-{c + 1} seconds')"
                            " || substr(created_at, 20)"
                        )
                    elif table == "sessions" and col == "status" and status is not None:
                        exprs.append(f"'{status}'")
                    else:
                        exprs.append(f'"{col}"')
                names = ", ".join(f'"{c_}"' for c_ in columns[table])
                con.execute(
                    f"INSERT INTO {table} ({names}) SELECT {', '.join(exprs)} FROM {table} "
                    f"WHERE {where[table]}",
                    (source,),
                )
            new_ids.append(source + shift["sessions"])
        con.commit()
        return new_ids
    finally:
        con.close()


def session_rows(db: Path, session_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a session, per table, exactly as stored."""
    con = sqlite3.connect(db)
    try:
        out = {
            "sessions": con.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchall()
        }
        for table in TABLE_ORDER[1:]:
            out[table] = con.execute(
                f"SELECT * FROM {table} WHERE session_id = ? ORDER BY id", (session_id,)
            ).fetchall()
        return out
    finally:
        con.close()


def table_counts(
    db: Path, tables: tuple[str, ...] = ("roles", "flow_templates", "flow_steps")
) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()
