"""``db restore-archive``: archived sessions back into the database, one per transaction.

The whole archive is verified first (every batch's checksum and row counts, and the
manifest). Then each session is restored in its own transaction, so an interrupted
restore leaves every session either whole or absent, and running it again finishes
the job. The rules, in order:

- A session already in the database (same creation time, flow and topic, under any id)
  is skipped: an interrupted prune archived it but never deleted it, or it was
  restored before.
- It comes back under its original ids when the session's id and every id of its rows
  are free; otherwise the session and all its rows get new ids, and every reference
  among them is remapped with the fork's helpers (session roles, replies, parent logs,
  ``result_data.message_id``, the context's message and log ids, the loop state).
- Its roles are matched by id and name, else by name, else restored. Steps that its
  logs name and that no longer exist (a flow re-imported with ``--replace`` dropped
  them) are recreated as retired steps (order = -id) from the session's snapshot.
- A session whose flow no longer exists cannot come back; it is reported, not forced.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Integer, MetaData, Table, insert, text

from flowcli.errors import ArchiveError
from flowcli.maintenance.archive import (
    ArchiveSummary,
    decode_value,
    iter_batches,
    verify_archive,
)
from flowcli.maintenance.selection import in_clause

if TYPE_CHECKING:
    from flowcli.db.connection import Database

RESTORED_TABLES = ("sessions", "session_roles", "messages", "step_execution_logs", "roles")


@dataclass
class RestoreReport:
    archive: ArchiveSummary
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESTORED_TABLES, 0))
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o["status"] == status)

    @property
    def failed(self) -> int:
        return self.count("not_restored")

    def to_json(self) -> dict[str, Any]:
        return {
            "archive": self.archive.to_json(),
            "dry_run": self.dry_run,
            "restored": self.count("restored"),
            "restored_with_new_ids": self.count("restored_new_ids"),
            "skipped": self.count("skipped"),
            "not_restored": self.failed,
            "rows": self.rows,
            "sessions": self.outcomes,
        }


class _NotRestorable(Exception):
    """This session cannot come back (its flow is gone, a column is unknown here …)."""


class _Columns:
    """The columns each table really has (archived columns must be among them)."""

    def __init__(self, conn: Connection) -> None:
        from flowcli.db.inspection import existing_columns

        self.have = {t: existing_columns(conn, t) for t in (*RESTORED_TABLES, "flow_steps")}

    def row(self, table_name: str, row: dict[str, Any], *, drop_id: bool) -> dict[str, Any]:
        unknown = sorted(set(row) - self.have[table_name])
        if unknown:
            raise _NotRestorable(
                f"its {table_name} rows have column(s) this database lacks: {', '.join(unknown)}"
            )
        return {k: decode_value(v) for k, v in row.items() if not (drop_id and k == "id")}


def _table(name: str, columns: Sequence[str]) -> Table:
    # Untyped columns: values pass through exactly as they were archived (timestamps as
    # the database's own text); only the id is typed, for RETURNING in insert order.
    return Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        *(Column(c) for c in columns if c != "id"),
    )


def _taken(conn: Connection, table_name: str, ids: Sequence[int]) -> bool:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        if conn.execute(
            text(f"SELECT 1 FROM {table_name} WHERE id IN {in_clause(chunk)} LIMIT 1")
        ).first():
            return True
    return False


def _insert_rows(
    conn: Connection, table_name: str, rows: list[dict[str, Any]], *, new_ids: bool
) -> list[int]:
    """Insert rows (all with the same columns); their ids, in order."""
    if not rows:
        return []
    cols = list(rows[0])
    t = _table(table_name, [*cols, "id"] if "id" not in cols else cols)
    if not new_ids:
        conn.execute(insert(t), rows)
        return [int(r["id"]) for r in rows]
    # One statement a row: a batched RETURNING would need each column's type (to cast
    # its VALUES on PostgreSQL), and these columns are deliberately untyped.
    stmt = insert(t).returning(t.c.id)
    return [int(conn.execute(stmt, row).scalar_one()) for row in rows]


def _existing_session(conn: Connection, session: dict[str, Any]) -> int | None:
    """The id of a session already in the database that is this one."""
    created = session.get("created_at")
    if created is None:
        row = conn.execute(
            text("SELECT id FROM sessions WHERE id = :id AND created_at IS NULL AND topic = :t"),
            {"id": session["id"], "t": session.get("topic")},
        ).first()
        return int(row[0]) if row else None
    row = conn.execute(
        text(
            "SELECT id FROM sessions WHERE created_at = :c AND flow_template_id = :f "
            "AND topic = :t ORDER BY id LIMIT 1"
        ),
        {"c": created, "f": session.get("flow_template_id"), "t": session.get("topic")},
    ).first()
    return int(row[0]) if row else None


def _map_roles(conn: Connection, cols: _Columns, roles: list[dict[str, Any]]) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for role in roles:
        rid, name = role.get("id"), role.get("name")
        if not isinstance(rid, int) or not isinstance(name, str):
            raise _NotRestorable("an archived role has no id or name")
        same = conn.execute(
            text("SELECT id FROM roles WHERE id = :id AND name = :n"), {"id": rid, "n": name}
        ).first()
        if same:
            mapping[rid] = rid
            continue
        by_name = conn.execute(text("SELECT id FROM roles WHERE name = :n"), {"n": name}).first()
        if by_name:
            mapping[rid] = int(by_name[0])
            continue
        new_ids = _taken(conn, "roles", [rid])
        (mapping[rid],) = _insert_rows(
            conn, "roles", [cols.row("roles", role, drop_id=new_ids)], new_ids=new_ids
        )
    return mapping


def _ensure_steps(conn: Connection, session: dict[str, Any], logs: list[dict[str, Any]]) -> int:
    """Recreate, as retired steps, the steps the logs name that no longer exist."""
    step_ids = sorted({int(log["step_id"]) for log in logs if isinstance(log.get("step_id"), int)})
    if not step_ids:
        return 0
    have = {
        int(r[0])
        for r in conn.execute(text(f"SELECT id FROM flow_steps WHERE id IN {in_clause(step_ids)}"))
    }
    missing = [s for s in step_ids if s not in have]
    if not missing:
        return 0
    from flowcli.db.json_text import loads_json

    snapshot = loads_json(session.get("flow_snapshot"), {})
    known = {
        s.get("id"): s
        for s in (snapshot.get("steps", []) if isinstance(snapshot, dict) else [])
        if isinstance(s, dict)
    }
    for step_id in missing:
        step = known.get(step_id)
        if step is None:
            raise _NotRestorable(f"its logs name step {step_id}, which no longer exists")

        def as_text(value: Any) -> Any:
            return value if value is None or isinstance(value, str) else json.dumps(value)

        conn.execute(
            text(
                'INSERT INTO flow_steps (id, flow_template_id, "order", speaker_role_ref, '
                "target_role_ref, task_type, context_scope, context_param, logic_config, "
                "description) VALUES (:id, :f, :o, :sp, :tg, :tt, :cs, :cp, :lc, :d)"
            ),
            {
                "id": step_id,
                "f": session["flow_template_id"],
                "o": -step_id,
                "sp": str(step.get("speaker_role_ref") or "?")[:50],
                "tg": step.get("target_role_ref"),
                "tt": str(step.get("task_type") or "comment")[:50],
                "cs": as_text(step.get("context_scope")) or "none",
                "cp": as_text(step.get("context_param")),
                "lc": as_text(step.get("logic_config")),
                "d": step.get("description"),
            },
        )
    return len(missing)


def _remap_engine_state(raw: Any, log_map: dict[int, int]) -> Any:
    from flowcli.db.engine_state import EngineState

    if not raw:
        return raw
    state = EngineState.from_json(raw)
    if not state.loops:
        return raw
    for loop in state.loops.values():
        loop.first_logs = {k: log_map.get(v, v) for k, v in loop.first_logs.items()}
    return state.to_json()


def _insert_logs(
    conn: Connection,
    cols: _Columns,
    sid: int,
    logs: list[dict[str, Any]],
    message_map: dict[int, int],
    *,
    new_ids: bool,
) -> dict[int, int]:
    """Insert a session's log rows; with new ids, every reference among them is remapped
    once all of them have their ids (a repeat's parent, the context's log ids)."""
    from flowcli.engine.debugging import remap_context, remap_result_data

    log_rows = []
    parents: dict[int, int] = {}
    for log in logs:
        values = cols.row("step_execution_logs", log, drop_id=new_ids)
        values["session_id"] = sid
        if new_ids:
            values["result_data"] = remap_result_data(values.get("result_data"), message_map)
            if values.get("parent_log_id") is not None:
                parents[int(log["id"])] = int(values["parent_log_id"])
                values["parent_log_id"] = None
        log_rows.append(values)
    log_map = dict(
        zip(
            [int(log["id"]) for log in logs],
            _insert_rows(conn, "step_execution_logs", log_rows, new_ids=new_ids),
            strict=True,
        )
    )
    if new_ids:
        for log in logs:
            context = remap_context(log.get("context_snapshot"), message_map, log_map)
            parent = log_map.get(parents.get(int(log["id"]), -1))
            if context != log.get("context_snapshot") or parent is not None:
                conn.execute(
                    text(
                        "UPDATE step_execution_logs SET context_snapshot = :c, "
                        "parent_log_id = :p WHERE id = :id"
                    ),
                    {"c": context, "p": parent, "id": log_map[int(log["id"])]},
                )
    return log_map


def _restore_session(
    conn: Connection, cols: _Columns, record: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, int]]:
    session = record["session"]
    archived_id = int(session["id"])
    rows = dict.fromkeys(RESTORED_TABLES, 0)
    present = _existing_session(conn, session)
    if present is not None:
        return {
            "archived_id": archived_id,
            "id": present,
            "status": "skipped",
            "reason": f"already in the database as session {present}",
        }, rows
    flow = session.get("flow_template_id")
    if not conn.execute(text("SELECT 1 FROM flow_templates WHERE id = :f"), {"f": flow}).first():
        raise _NotRestorable(f"its flow {flow} no longer exists")
    recreated = _ensure_steps(conn, session, record["logs"])
    roles_before = conn.execute(text("SELECT count(*) FROM roles")).scalar() or 0
    role_map = _map_roles(conn, cols, record["roles"])
    rows["roles"] = int(conn.execute(text("SELECT count(*) FROM roles")).scalar() or 0) - int(
        roles_before
    )
    new_ids = _taken(conn, "sessions", [archived_id]) or any(
        _taken(conn, name, [int(r["id"]) for r in record[key]])
        for key, name in (
            ("session_roles", "session_roles"),
            ("messages", "messages"),
            ("logs", "step_execution_logs"),
        )
    )
    (sid,) = _insert_rows(
        conn, "sessions", [cols.row("sessions", session, drop_id=new_ids)], new_ids=new_ids
    )
    rows["sessions"] = 1

    sr_rows = []
    for sr in record["session_roles"]:
        values = cols.row("session_roles", sr, drop_id=new_ids)
        values["session_id"] = sid
        values["role_id"] = role_map.get(sr["role_id"], sr["role_id"])
        sr_rows.append(values)
    sr_map = dict(
        zip(
            [int(r["id"]) for r in record["session_roles"]],
            _insert_rows(conn, "session_roles", sr_rows, new_ids=new_ids),
            strict=True,
        )
    )
    rows["session_roles"] = len(sr_rows)

    msg_rows = []
    replies: dict[int, int] = {}
    for msg in record["messages"]:
        values = cols.row("messages", msg, drop_id=new_ids)
        values["session_id"] = sid
        for key in ("speaker_session_role_id", "target_session_role_id"):
            if values.get(key) is not None:
                values[key] = sr_map.get(values[key], values[key] if not new_ids else None)
        if new_ids and values.get("reply_to_message_id") is not None:
            replies[int(msg["id"])] = int(values["reply_to_message_id"])
            values["reply_to_message_id"] = None  # set once the new ids are known
        msg_rows.append(values)
    message_map = dict(
        zip(
            [int(m["id"]) for m in record["messages"]],
            _insert_rows(conn, "messages", msg_rows, new_ids=new_ids),
            strict=True,
        )
    )
    rows["messages"] = len(msg_rows)
    for old, target in replies.items():
        conn.execute(
            text("UPDATE messages SET reply_to_message_id = :r WHERE id = :id"),
            {"r": message_map.get(target), "id": message_map[old]},
        )

    log_map = _insert_logs(conn, cols, sid, record["logs"], message_map, new_ids=new_ids)
    rows["step_execution_logs"] = len(record["logs"])
    if new_ids:
        state = _remap_engine_state(session.get("engine_state"), log_map)
        if state != session.get("engine_state"):
            conn.execute(
                text("UPDATE sessions SET engine_state = :s WHERE id = :id"),
                {"s": state, "id": sid},
            )
    outcome = {
        "archived_id": archived_id,
        "id": sid,
        "status": "restored_new_ids" if new_ids else "restored",
        "reason": None,
    }
    if recreated:
        outcome["reason"] = f"{recreated} step(s) its logs name were recreated as retired steps"
    return outcome, rows


def _restore_logs_only(
    conn: Connection, cols: _Columns, record: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, int]]:
    """A logs-only record: its logs go back into the session, which must still be here."""
    session = record["session"]
    archived_id = int(session["id"])
    rows = dict.fromkeys(RESTORED_TABLES, 0)
    sid = _existing_session(conn, session)
    if sid is None:
        raise _NotRestorable("its session is no longer in the database")
    orders = [int(log["execution_order"]) for log in record["logs"]]
    clash = conn.execute(
        text(
            "SELECT count(*) FROM step_execution_logs WHERE session_id = :s AND "
            f"execution_order IN {in_clause(orders or [-1])}"
        ),
        {"s": sid},
    ).scalar()
    if clash:
        return {
            "archived_id": archived_id,
            "id": sid,
            "status": "skipped",
            "reason": f"{clash} of its log rows are already in the database",
        }, rows
    _ensure_steps(conn, session, record["logs"])
    new_ids = sid != archived_id or _taken(
        conn, "step_execution_logs", [int(log["id"]) for log in record["logs"]]
    )
    _insert_logs(conn, cols, sid, record["logs"], {}, new_ids=new_ids)
    rows["step_execution_logs"] = len(record["logs"])
    status = "restored_new_ids" if new_ids else "restored"
    return {"archived_id": archived_id, "id": sid, "status": status, "reason": None}, rows


def restore_archive(
    db: Database,
    path: Path,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RestoreReport:
    """Verify the archive, then restore each session in its own transaction."""
    if not path.is_file():
        raise ArchiveError(f"archive {path} does not exist or is not a file")
    summary = verify_archive(path)
    report = RestoreReport(archive=summary, dry_run=dry_run)
    if dry_run:
        return report
    try:
        _restore_batches(db, path, report, progress)
    except BaseException:
        # What was restored stays (each session is whole); its ids must not collide later.
        with contextlib.suppress(Exception):
            _advance_sequences(db)
        raise
    _advance_sequences(db)
    return report


def _advance_sequences(db: Database) -> None:
    """PostgreSQL hands out ids from sequences, which rows inserted with their own ids do
    not move: set each past the highest id, or the next insert would collide."""
    if db.is_sqlite:
        return
    with db.write() as conn:
        for table in (*RESTORED_TABLES, "flow_steps"):
            seq = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}
            ).scalar()
            if seq is None:
                continue
            conn.execute(
                text(
                    f"SELECT setval(:s, greatest((SELECT coalesce(max(id), 0) FROM {table}), "
                    f"(SELECT last_value FROM {seq})))"
                ),
                {"s": seq},
            )


def _restore_batches(
    db: Database,
    path: Path,
    report: RestoreReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    done = 0
    cols: _Columns | None = None
    for batch in iter_batches(path):
        for record in batch:
            archived_id = int(record["session"]["id"])
            try:
                with db.write() as conn:
                    cols = cols or _Columns(conn)
                    if record["logs_only"]:
                        outcome, rows = _restore_logs_only(conn, cols, record)
                    else:
                        outcome, rows = _restore_session(conn, cols, record)
            except _NotRestorable as exc:
                outcome = {
                    "archived_id": archived_id,
                    "id": None,
                    "status": "not_restored",
                    "reason": str(exc),
                }
                rows = {}
            report.outcomes.append(outcome)
            for key, n in rows.items():
                report.rows[key] += n
            done += 1
            if progress is not None:
                progress(done, report.archive.sessions)
