"""The engine's hot path: one step's reads and writes on the raw DBAPI connection.

Why not SQLAlchemy here: building and caching Core statements costs more per step than
SQLite spends writing them (see BENCHMARKS.md). The statements are few and fixed, so
they are written once as SQL text for the two paramstyles flowcli meets (sqlite3's
``:name``, psycopg's ``%(name)s``). Everything else in flowcli uses SQLAlchemy
(flowcli.db.session_store for the same tables outside the hot path).
"""

from __future__ import annotations

import operator
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from flowcli.db.plain_schema import STEP_LOG_COLUMNS
from flowcli.db.session_row import SessionRow, utcnow
from flowcli.errors import NotFoundError, SessionBusyError, SessionStateError

_SESSION_COLUMNS = tuple(SessionRow.__dataclass_fields__)
_UNSET = object()
# lease_expires_at is the one timestamp the engine compares (load_session parses it);
# the others are carried, not read.
# Every column of a log row but its id: the bug report's INSERT, in its order.
LOG_INSERT_COLUMNS = STEP_LOG_COLUMNS
# The log columns the replay (flowcli.engine.replay) reads, in execution order.
REPLAY_COLUMNS = (
    "id",
    "step_id",
    "execution_order",
    "status",
    "result_type",
    "round_index",
    "result_data",
)
# What a step's decision is read from and another writer may change: flowcli's writers
# bump the version, MRC's move the status, the position and the count (and edit the
# topic) without touching it. A step writes only if all of them are as it read them.
UNCHANGED_COLUMNS = (
    "version",
    "status",
    "current_step_id",
    "current_round",
    "executed_steps_count",
    "lease_owner",
    "topic",
)
_unchanged_of = operator.attrgetter(*UNCHANGED_COLUMNS)
MESSAGE_INSERT_COLUMNS = (
    "session_id",
    "speaker_session_role_id",
    "target_session_role_id",
    "reply_to_message_id",
    "content",
    "content_summary",
    "round_index",
    "section",
    "created_at",
)
_VIEW_SELECT = (
    "SELECT m.id, sp.role_ref, tg.role_ref, m.content, m.section, m.round_index "
    "FROM messages m "
    "LEFT JOIN session_roles sp ON sp.id = m.speaker_session_role_id "
    "LEFT JOIN session_roles tg ON tg.id = m.target_session_role_id "
    "WHERE m.session_id = {sid}"
)


# The last datetime bound and its text. A step binds its one timestamp several times
# (message, log row, session): it is formatted once. Datetimes are immutable and the memo
# holds a reference, so the same object always has the same text (one tuple, swapped
# whole, so threads see a matching pair).
_last_time: tuple[datetime | None, str] = (None, "")


def _sqlite_time(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime writes, so both paths read each other's rows.
    global _last_time
    last = _last_time
    if last[0] is value:
        return last[1]
    text = value.isoformat(" ", "microseconds")
    _last_time = (value, text)
    return text


# Bind datetimes as that text on every sqlite3 connection, instead of converting each
# parameter in Python (Python 3.12 deprecates sqlite3's own default adapter anyway;
# SQLAlchemy binds its own strings, so it is unaffected).
sqlite3.register_adapter(datetime, _sqlite_time)


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


# How long one try at the write lock waits inside SQLite before our own retry sleeps.
_TRY_WAIT_MS = 2
_SHORT_WAIT = f"PRAGMA busy_timeout = {_TRY_WAIT_MS}"


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY" or "locked" in str(exc)


class LockPatience:
    """Waiting for the write lock (or for a quiet moment) within a time budget.

    Each ``wait()`` sleeps a little longer than the last, with jitter, so processes that
    collided do not collide again in step; it returns False once the budget is spent.
    Short sleeps matter: each holder keeps the lock for milliseconds, and a waiter that
    sleeps 100 ms (SQLite's own longest nap) keeps missing the moments it is free.
    """

    FIRST_SLEEP = 0.001
    LONGEST_SLEEP = 0.025

    def __init__(self, budget: float) -> None:
        self.deadline = time.monotonic() + max(budget, 0.0)
        self._sleep = self.FIRST_SLEEP

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self) -> bool:
        left = self.remaining()
        if left <= 0:
            return False
        time.sleep(min(left, random.uniform(0.5, 1.5) * self._sleep))
        self._sleep = min(self._sleep * 2, self.LONGEST_SLEEP)
        return True


class StepTx:
    """SQL for one step, on a DBAPI connection owned by the caller."""

    def __init__(self, dbapi_conn: Any, dialect: str, busy_timeout: float | None = None) -> None:
        self.raw = dbapi_conn
        self.dialect = dialect
        # With a budget, the write lock is waited for here (LockPatience), not only by
        # SQLite's own busy handler; None leaves the waiting to SQLite alone.
        self.busy_timeout = busy_timeout
        self.sqlite = dialect == "sqlite"
        self.cur = dbapi_conn.cursor()
        self._transaction = _Transaction(self)
        if busy_timeout is not None:
            self._full_wait = f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}"
        self._sql: dict[Any, str] = {}
        self._update_sql: dict[tuple[Any, ...], str] = {}

    @classmethod
    def over(cls, conn: Any) -> StepTx:
        """A StepTx sharing a SQLAlchemy connection's DBAPI connection and transaction."""
        return cls(conn.connection.driver_connection, conn.dialect.name)

    # --- SQL text, built once per statement ------------------------------------------

    def p(self, name: str) -> str:
        return f":{name}" if self.sqlite else f"%({name})s"

    def sql(self, key: str) -> str:
        cached = self._sql.get(key)
        if cached is None:
            cached = self._build(key)
            self._sql[key] = cached
        return cached

    def _build(self, key: str) -> str:
        p = self.p
        if key in ("load_session", "peek_session"):
            cols = ", ".join(_SESSION_COLUMNS)
            lock = "" if self.sqlite or key == "peek_session" else " FOR UPDATE"
            return f"SELECT {cols} FROM sessions WHERE id = {p('id')}{lock}"
        if key == "next_message_id":
            if self.sqlite:
                # No AUTOINCREMENT on messages (flowcli's or MRC's): SQLite gives max + 1.
                return "SELECT coalesce(max(id), 0) + 1 FROM messages"
            return "SELECT nextval(pg_get_serial_sequence('messages', 'id'))"
        # The step's inserts bind positionally: a list built with map() costs less per
        # step than a dict of twenty named parameters.
        mark = "?" if self.sqlite else "%s"
        if key == "insert_message_with_id":
            with_id = ("id", *MESSAGE_INSERT_COLUMNS)
            return (
                f"INSERT INTO messages ({', '.join(with_id)}) VALUES "
                f"({', '.join(mark for _ in with_id)}) RETURNING id"
            )
        if key == "insert_log":
            return (
                f"INSERT INTO step_execution_logs ({', '.join(LOG_INSERT_COLUMNS)}) VALUES "
                f"({', '.join(mark for _ in LOG_INSERT_COLUMNS)})"
                + ("" if self.sqlite else " RETURNING id")
            )
        if key == "insert_message":
            return (
                f"INSERT INTO messages ({', '.join(MESSAGE_INSERT_COLUMNS)}) VALUES "
                f"({', '.join(mark for _ in MESSAGE_INSERT_COLUMNS)})"
                + ("" if self.sqlite else " RETURNING id")
            )
        if key == "max_order":
            return (
                "SELECT max(execution_order) FROM step_execution_logs "
                f"WHERE session_id = {p('sid')}"
            )
        if key == "replay_rows":
            return (
                f"SELECT {', '.join(REPLAY_COLUMNS)} FROM step_execution_logs "
                f"WHERE session_id = {p('sid')} ORDER BY execution_order, id"
            )
        if key == "running_logs":
            return (
                "SELECT id FROM step_execution_logs "
                f"WHERE session_id = {p('sid')} AND status = 'running'"
            )
        if key == "session_roles":
            return (
                f"SELECT role_ref, id FROM session_roles WHERE session_id = {p('sid')} ORDER BY id"
            )
        if key == "insert_session_role":
            return (
                "INSERT INTO session_roles (session_id, role_ref, role_id, created_at) "
                f"VALUES ({p('sid')}, {p('ref')}, {p('role_id')}, {p('now')})"
                + ("" if self.sqlite else " RETURNING id")
            )
        if key == "role_by_id":
            return f"SELECT id, prompt FROM roles WHERE id = {p('id')}"
        if key == "mapped_role":
            return (
                "SELECT r.id, r.prompt FROM session_roles sr JOIN roles r ON r.id = sr.role_id "
                f"WHERE sr.session_id = {p('sid')} AND sr.role_ref = {p('ref')} "
                "ORDER BY sr.id LIMIT 1"
            )
        if key == "role_by_name":
            return f"SELECT id, prompt FROM roles WHERE name = {p('name')}"
        if key.startswith("view:"):
            return _VIEW_SELECT.format(sid=p("sid")) + key[5:]
        raise KeyError(key)

    # --- helpers -----------------------------------------------------------------------

    def _insert(self, key: str, params: Any) -> int:
        self.cur.execute(self.sql(key), params)
        if self.sqlite:
            return int(self.cur.lastrowid)
        return int(self.cur.fetchone()[0])

    # --- transaction -------------------------------------------------------------------

    def transaction(self) -> _Transaction:
        """BEGIN IMMEDIATE on SQLite (the write lock up front); commit or roll back."""
        return self._transaction

    def _begin_immediate(self) -> None:
        """Take the write lock, retrying with short jittered sleeps within the busy timeout.

        SQLite's busy handler naps up to 100 ms between tries: with several processes each
        holding the lock for milliseconds, such a waiter keeps missing the moments it is
        free and gives up at the timeout although the lock was free most of the time. So
        each try here waits only briefly inside SQLite, and the retries are ours. The full
        timeout is restored for the transaction itself (a COMMIT in rollback-journal mode
        waits for readers through the busy handler).
        """
        if self.busy_timeout is None:
            self.cur.execute("BEGIN IMMEDIATE")
            return
        self.cur.execute(_SHORT_WAIT)
        try:
            patience = None  # the budget starts at the first refusal
            while True:
                try:
                    self.cur.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if patience is None:
                        patience = LockPatience(self.busy_timeout)
                    if not _is_locked(exc) or not patience.wait():
                        raise
        finally:
            self.cur.execute(self._full_wait)

    # --- sessions ----------------------------------------------------------------------

    def end_read(self) -> None:
        """End whatever the reads before a write opened: psycopg begins a transaction on
        the first SELECT, and an evaluation must not run inside one (sqlite3 here runs
        each SELECT on its own, so there is nothing to end)."""
        if not self.sqlite:
            self.raw.rollback()

    def load_session(self, session_id: int, *, lock: bool = True) -> SessionRow:
        """The session row; ``lock=False`` reads it without FOR UPDATE (PostgreSQL), for
        the read that a step's decision is computed from before its write opens."""
        self.cur.execute(self.sql("load_session" if lock else "peek_session"), {"id": session_id})
        row = self.cur.fetchone()
        if row is None:
            raise NotFoundError(f"session {session_id} does not exist")
        # The SELECT lists the columns in SessionRow's field order.
        session = SessionRow(*row)
        session.lease_expires_at = _parse_time(session.lease_expires_at)
        return session

    def update_session(self, row: SessionRow, values: dict[str, Any]) -> None:
        """Write ``values`` if the session is still at the version read (no lost update)."""
        written = self._update_session(row, values, unchanged=False)
        if written is None:
            raise SessionBusyError(
                f"session {row.id} was changed by another process meanwhile; nothing was written"
            )
        apply_values(row, written)

    def update_session_if_unchanged(
        self, row: SessionRow, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Write ``values`` only if every column a step's decision was read from
        (UNCHANGED_COLUMNS) still holds what ``row`` says; None, writing nothing, if not.

        The version alone is not enough: MRC moves a session without bumping it. Run as
        the first write of a step's transaction, this one statement is the fence: once it
        has matched, the transaction holds the row (SQLite's write lock, PostgreSQL's row
        lock) until it commits, so no one can move the session under the step.

        ``row`` is left as it was: the caller applies what was written (the returned
        columns, ``apply_values``) once the rest of its transaction has been written, so
        a transaction rolled back after this leaves ``row`` as the database still has it.
        """
        return self._update_session(row, values, unchanged=True)

    def set_engine_state(self, row: SessionRow, text: str) -> None:
        """Inside a transaction that already wrote the session: its engine state, once the
        log id it names exists."""
        mark = "?" if self.sqlite else "%s"
        self.cur.execute(
            f"UPDATE sessions SET engine_state = {mark} WHERE id = {mark}", [text, row.id]
        )

    def _update_session(
        self, row: SessionRow, values: dict[str, Any], *, unchanged: bool
    ) -> dict[str, Any] | None:
        # Only the columns that change: the check below guarantees the row is as read, so
        # a column already holding its value need not be written again.
        held = row.__dict__.get  # SessionRow is a plain dataclass: its fields are its dict
        values = {k: v for k, v in values.items() if held(k, _UNSET) != v}
        if "updated_at" not in values:
            values["updated_at"] = utcnow()
        values["version"] = (row.version or 0) + 1
        cache_key = (unchanged, row.version is None, *values)
        sql = self._update_sql.get(cache_key)
        if sql is None:
            sql = self._session_update_sql(tuple(values), unchanged, row.version is None)
            self._update_sql[cache_key] = sql
        params = list(values.values())
        params.append(row.id)
        if unchanged:
            params.extend(_unchanged_of(row))
        elif row.version is not None:
            params.append(row.version)
        self.cur.execute(sql, params)
        return values if self.cur.rowcount == 1 else None

    def _session_update_sql(
        self, columns: tuple[str, ...], unchanged: bool, no_version: bool
    ) -> str:
        mark = "?" if self.sqlite else "%s"
        sets = ", ".join(f"{c} = {mark}" for c in columns)
        if unchanged:
            # NULL-safe equality: a column read as NULL must still be NULL.
            same = "IS" if self.sqlite else "IS NOT DISTINCT FROM"
            where = " AND ".join(f"{c} {same} {mark}" for c in UNCHANGED_COLUMNS)
        elif no_version:
            where = "version IS NULL"
        else:
            where = f"version = {mark}"
        return f"UPDATE sessions SET {sets} WHERE id = {mark} AND {where}"

    def claimable_session(self, now: datetime, only: Sequence[int] = ()) -> int | None:
        """The id of a running session no one holds a live claim on, least recently run
        first. On PostgreSQL the row is locked with SKIP LOCKED, so concurrent workers
        each get a different session without waiting for one another."""
        p = self.p
        sql = (
            "SELECT id FROM sessions WHERE status = 'running' AND "
            f"(lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < {p('now')})"
        )
        params: dict[str, Any] = {"now": now}
        if only:
            marks = ", ".join(p(f"s{i}") for i in range(len(only)))
            sql += f" AND id IN ({marks})"
            params.update({f"s{i}": sid for i, sid in enumerate(only)})
        sql += " ORDER BY updated_at, id LIMIT 1"
        if not self.sqlite:
            sql += " FOR UPDATE SKIP LOCKED"
        self.cur.execute(sql, params)
        found = self.cur.fetchone()
        return int(found[0]) if found else None

    def release_claim(self, session_id: int, owner: str) -> None:
        """Drop ``owner``'s claim on the session, if it still holds it."""
        p = self.p
        self.cur.execute(
            f"UPDATE sessions SET lease_owner = NULL, lease_expires_at = NULL "
            f"WHERE id = {p('id')} AND lease_owner = {p('owner')}",
            {"id": session_id, "owner": owner},
        )

    # --- logs and messages -----------------------------------------------------------

    def next_execution_order(self, session_id: int, executed_steps_count: int | None) -> int:
        """The number of the session's next log row: above every row and above the count.

        MRC numbers its next row ``executed_steps_count + 1``; every row flowcli writes
        sets the count to its own number, so MRC's next number is always free.
        """
        self.cur.execute(self.sql("max_order"), {"sid": session_id})
        value = self.cur.fetchone()[0]
        return max(int(value or 0), executed_steps_count or 0) + 1

    def replay_rows(self, session_id: int, batch: int = 500) -> Iterator[dict[str, Any]]:
        """The session's log rows as the replay reads them (flowcli.engine.replay),
        streamed in batches on a cursor of their own: memory stays bounded however long
        the log is."""
        cur = self.raw.cursor()
        try:
            cur.execute(self.sql("replay_rows"), {"sid": session_id})
            while rows := cur.fetchmany(batch):
                for r in rows:
                    yield dict(zip(REPLAY_COLUMNS, r, strict=True))
        finally:
            cur.close()

    def insert_log(self, values: dict[str, Any]) -> int:
        return self._insert("insert_log", list(map(values.get, LOG_INSERT_COLUMNS)))

    def update_log(
        self, log_id: int, values: dict[str, Any], *, only_running: bool = False
    ) -> None:
        """Update one log row; ``only_running``: only while it is still ``running`` (a
        row someone else closed meanwhile keeps what they wrote)."""
        sets = ", ".join(f"{k} = {self.p('v_' + k)}" for k in values)
        params = {f"v_{k}": v for k, v in values.items()}
        params["w_id"] = log_id
        still = " AND status = 'running'" if only_running else ""
        self.cur.execute(
            f"UPDATE step_execution_logs SET {sets} WHERE id = {self.p('w_id')}{still}", params
        )

    def newest_log(self, session_id: int) -> dict[str, Any] | None:
        """The session's log row with the highest execution order (what explain repeats)."""
        columns = ("id", "execution_order", "status", "result_type", "result_data", "error_message")
        self.cur.execute(
            f"SELECT {', '.join(columns)} FROM step_execution_logs "
            f"WHERE session_id = {self.p('sid')} ORDER BY execution_order DESC LIMIT 1",
            {"sid": session_id},
        )
        found = self.cur.fetchone()
        return None if found is None else dict(zip(columns, found, strict=True))

    def running_log_ids(self, session_id: int) -> list[int]:
        self.cur.execute(self.sql("running_logs"), {"sid": session_id})
        return [int(r[0]) for r in self.cur.fetchall()]

    def insert_message(self, values: dict[str, Any], *, reserved_id: int | None = None) -> int:
        """Insert a message; ``reserved_id``, when given, is an id reserved on PostgreSQL by
        ``next_message_id`` (on SQLite the id is assigned and the caller compares it)."""
        params = list(map(values.get, MESSAGE_INSERT_COLUMNS))
        if reserved_id is not None and not self.sqlite:
            self.cur.execute(self.sql("insert_message_with_id"), [reserved_id, *params])
            return int(self.cur.fetchone()[0])
        return self._insert("insert_message", params)

    def next_message_id(self) -> int | None:
        """The id the next message will get: on SQLite a prediction (max + 1, checked after
        the insert), on PostgreSQL an id reserved from the sequence (None when the column
        has no sequence of its own)."""
        self.cur.execute(self.sql("next_message_id"))
        value = self.cur.fetchone()[0]
        return int(value) if value is not None else None

    def delete_message(self, message_id: int) -> None:
        self.cur.execute(f"DELETE FROM messages WHERE id = {self.p('id')}", {"id": message_id})

    # --- roles ---------------------------------------------------------------------------

    def session_role_ids(self, session_id: int) -> dict[str, int]:
        self.cur.execute(self.sql("session_roles"), {"sid": session_id})
        out: dict[str, int] = {}
        for ref, sr_id in self.cur.fetchall():
            out.setdefault(ref, int(sr_id))
        return out

    def resolve_role(
        self, ref: str, roles_snapshot: dict[str, Any], session_id: int | None = None
    ) -> tuple[int, str | None]:
        """(role id, prompt) for a role ref: the session's snapshot (flowcli's ``role_id``
        or MRC's ``id``), else its session_roles mapping, else a role of that name."""
        snap = roles_snapshot.get(ref)
        snap_id = snap.get("role_id", snap.get("id")) if isinstance(snap, dict) else None
        if isinstance(snap_id, int) and not isinstance(snap_id, bool):
            self.cur.execute(self.sql("role_by_id"), {"id": snap_id})
            found = self.cur.fetchone()
            if found is not None:
                return snap_id, (snap or {}).get("prompt", found[1])
        if session_id is not None:
            self.cur.execute(self.sql("mapped_role"), {"sid": session_id, "ref": ref})
            found = self.cur.fetchone()
            if found is not None:
                return int(found[0]), found[1]
        self.cur.execute(self.sql("role_by_name"), {"name": ref})
        found = self.cur.fetchone()
        if found is None:
            raise SessionStateError(
                f"role {ref!r} is not defined: add it with `flowcli role add {ref} --prompt …`"
            )
        return int(found[0]), found[1]

    def insert_session_role(self, session_id: int, ref: str, role_id: int) -> int:
        return self._insert(
            "insert_session_role",
            {"sid": session_id, "ref": ref, "role_id": role_id, "now": utcnow()},
        )

    # --- message views ----------------------------------------------------------------

    def _views(self, key_suffix: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.cur.execute(self.sql("view:" + key_suffix), params)
        return [tuple(r) for r in self.cur.fetchall()]

    def message_views(
        self, session_id: int, *, scope: str | Sequence[str], round_: int, n: int = 5
    ) -> list[tuple[Any, ...]]:
        """Rows (id, speaker, target, content, section, round) under ``scope``, oldest first."""
        p = self.p
        if isinstance(scope, str):
            if scope in ("none", "__TOPIC__"):
                return []
            if scope == "all":
                return self._views(" ORDER BY m.id", {"sid": session_id})
            if scope == "last_message":
                return self.newest(session_id, 1)
            if scope == "last_n_messages":
                return self.newest(session_id, max(1, n))
            if scope == "last_round":
                return self._views(
                    f" AND m.round_index = {p('r')} ORDER BY m.id",
                    {"sid": session_id, "r": round_ - 1},
                )
            return self._views(
                f" AND sp.role_ref = {p('ref')} ORDER BY m.id", {"sid": session_id, "ref": scope}
            )
        refs = list(scope)
        if not refs:
            return []
        marks = ", ".join(p(f"r{i}") for i in range(len(refs)))
        params: dict[str, Any] = {"sid": session_id}
        params.update({f"r{i}": ref for i, ref in enumerate(refs)})
        self.cur.execute(
            _VIEW_SELECT.format(sid=p("sid")) + f" AND sp.role_ref IN ({marks}) ORDER BY m.id",
            params,
        )
        return [tuple(r) for r in self.cur.fetchall()]

    def newest(self, session_id: int, n: int) -> list[tuple[Any, ...]]:
        rows = self._views(f" ORDER BY m.id DESC LIMIT {self.p('n')}", {"sid": session_id, "n": n})
        rows.reverse()
        return rows

    def last_message_view(self, session_id: int) -> tuple[Any, ...] | None:
        rows = self.newest(session_id, 1)
        return rows[0] if rows else None


class _Transaction:
    """StepTx.transaction(): a plain context manager (one per StepTx, reused), cheaper
    per step than a generator-based one."""

    __slots__ = ("tx",)

    def __init__(self, tx: StepTx) -> None:
        self.tx = tx

    def __enter__(self) -> StepTx:
        tx = self.tx
        if tx.sqlite:
            tx._begin_immediate()
        return tx

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.tx.raw.rollback()
            return  # the exception goes on
        self.tx.raw.commit()


def apply_values(row: SessionRow, values: dict[str, Any]) -> None:
    """Set on ``row`` the columns an update wrote."""
    row.__dict__.update(values)  # a plain dataclass: the same as setattr, name by name


def is_sqlite_error(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error)
