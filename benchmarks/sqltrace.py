"""Record what a flowcli process asks of its database driver; replay it with the bare driver.

The step-cost baseline must make exactly the writes and reads flowcli makes, whatever
statements the engine uses this month. So nothing here knows flowcli's SQL: ``record``
runs flowcli in this process with ``sqlite3.connect`` (and ``psycopg.connect``) wrapped,
and writes every DBAPI call it makes (connect, execute with its parameters, fetch,
commit, rollback, close, isolation settings) to a pickle. ``replay`` opens the same
connections with plain sqlite3 / psycopg on another copy of the starting database and
makes the same calls, timing them. ``run`` only applies the durability hook below.

    python benchmarks/sqltrace.py record TRACE [--synchronous full] -- [flowcli args]
    python benchmarks/sqltrace.py run --synchronous full -- [flowcli args]
    python benchmarks/sqltrace.py replay TRACE TARGET [--synchronous normal|full]

TARGET is a SQLite file, or a PostgreSQL database name (same server and user as the
recording). ``replay`` prints one JSON object: the seconds spent and the calls made.

The durability hook (``--synchronous full`` for record/run) exists until flowcli has a
durability setting of its own: flowcli sets ``PRAGMA synchronous = NORMAL`` on every
connection, so the hook sets FULL right after connecting and installs a SQLite
authorizer that turns any later ``synchronous`` pragma into a no-op. The authorizer is
consulted only when a statement is prepared (sqlite3 caches prepared statements), so it
costs nothing per step once the statements are cached. ``replay --synchronous`` rewrites
the recorded ``synchronous`` pragmas to the level asked for, so the bare replay runs at
the same level as flowcli did.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import pickle
import re
import sqlite3
import sys
import time
from typing import Any

SYNCHRONOUS_LEVELS = {"off": 0, "normal": 1, "full": 2, "extra": 3}
_SYNCHRONOUS_PRAGMA = re.compile(r"^\s*PRAGMA\s+(?:main\.)?synchronous\s*=", re.IGNORECASE)
_PLAIN_TYPES = (type(None), int, float, str, bytes)

# --- recording ---------------------------------------------------------------------------

EVENTS: list[tuple[Any, ...]] = []
_ids = itertools.count(1)


def _adapt_sqlite(value: Any) -> Any:
    """The value sqlite3 binds: registered adapters applied (flowcli registers one for
    datetime), so the replay binds plain values and pays for no Python conversion."""
    if isinstance(value, _PLAIN_TYPES):
        return value
    adapter = sqlite3.adapters.get((type(value), sqlite3.PrepareProtocol))
    if adapter is None:
        raise TypeError(f"sqltrace: cannot record a parameter of type {type(value).__name__}")
    return adapter(value)


def _sqlite_params(params: Any) -> Any:
    if params is None:
        return None
    if isinstance(params, dict):
        return {k: _adapt_sqlite(v) for k, v in params.items()}
    return tuple(_adapt_sqlite(v) for v in params)


def _recorded_setting(name: str, base: type) -> property:
    """A property that records assignments to ``name`` before the driver applies them."""
    descriptor = getattr(base, name)

    def get(self: Any) -> Any:
        return descriptor.__get__(self, type(self))

    def set_(self: Any, value: Any) -> None:
        EVENTS.append(("set", self._trace_id, name, value))
        descriptor.__set__(self, value)

    return property(get, set_)


class RecordingSqliteCursor(sqlite3.Cursor):
    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__(connection)
        self._trace_id = next(_ids)
        EVENTS.append(("cursor", connection._trace_id, self._trace_id))  # type: ignore[attr-defined]

    def execute(self, sql: str, params: Any = None, /) -> Any:  # type: ignore[override]
        EVENTS.append(("execute", self._trace_id, sql, _sqlite_params(params)))
        if params is None:
            return super().execute(sql)
        return super().execute(sql, params)

    def executemany(self, sql: str, seq: Any, /) -> Any:  # type: ignore[override]
        rows = [_sqlite_params(p) for p in seq]
        EVENTS.append(("executemany", self._trace_id, sql, rows))
        return super().executemany(sql, rows)

    def executescript(self, script: str, /) -> Any:  # type: ignore[override]
        EVENTS.append(("executescript", self._trace_id, script))
        return super().executescript(script)

    def fetchone(self) -> Any:
        EVENTS.append(("fetchone", self._trace_id))
        return super().fetchone()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        EVENTS.append(("fetchmany", self._trace_id, size))
        return super().fetchmany() if size is None else super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        EVENTS.append(("fetchall", self._trace_id))
        return super().fetchall()

    def __next__(self) -> Any:
        EVENTS.append(("next", self._trace_id))
        return super().__next__()

    def close(self) -> None:
        EVENTS.append(("cursor_close", self._trace_id))
        super().close()


class RecordingSqliteConnection(sqlite3.Connection):
    isolation_level = _recorded_setting("isolation_level", sqlite3.Connection)  # type: ignore[assignment]

    def cursor(self, factory: Any = None) -> Any:  # type: ignore[override]
        return super().cursor(factory or RecordingSqliteCursor)

    # sqlite3's own Connection.execute* build a plain cursor in C; go through ours.
    def execute(self, sql: str, params: Any = None, /) -> Any:  # type: ignore[override]
        cur = self.cursor()
        return cur.execute(sql) if params is None else cur.execute(sql, params)

    def executemany(self, sql: str, seq: Any, /) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, seq)

    def executescript(self, script: str, /) -> Any:  # type: ignore[override]
        return self.cursor().executescript(script)

    def commit(self) -> None:
        EVENTS.append(("commit", self._trace_id))
        super().commit()

    def rollback(self) -> None:
        EVENTS.append(("rollback", self._trace_id))
        super().rollback()

    def close(self) -> None:
        if not getattr(self, "_trace_closed", False):
            # The level the connection really ran at, whoever set it.
            level = sqlite3.Connection.execute(self, "PRAGMA synchronous").fetchone()[0]
            SYNCHRONOUS_SEEN.append(level)
            self._trace_closed = True
        EVENTS.append(("close", self._trace_id))
        super().close()


SYNCHRONOUS_SEEN: list[int] = []
OPEN_SQLITE: list[RecordingSqliteConnection] = []


def _synchronous_of_open_connections() -> None:
    for conn in OPEN_SQLITE:
        if not getattr(conn, "_trace_closed", False):
            try:
                level = sqlite3.Connection.execute(conn, "PRAGMA synchronous").fetchone()[0]
            except sqlite3.ProgrammingError:  # closed behind our back
                continue
            SYNCHRONOUS_SEEN.append(level)


def _install_sqlite(record: bool, synchronous: str | None) -> None:
    import sqlite3.dbapi2 as dbapi2

    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if record:
            kwargs.setdefault("factory", RecordingSqliteConnection)
        conn = original(*args, **kwargs)
        if record:
            OPEN_SQLITE.append(conn)
            conn._trace_id = trace_id = next(_ids)  # type: ignore[attr-defined]
            recorded_kwargs = {k: v for k, v in kwargs.items() if k != "factory"}
            EVENTS.append(("connect", "sqlite", trace_id, args, recorded_kwargs))
        if synchronous is not None:
            _force_synchronous(conn, synchronous)
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    dbapi2.connect = connect  # type: ignore[assignment]  # SQLAlchemy uses sqlite3.dbapi2


def _force_synchronous(conn: sqlite3.Connection, level: str) -> None:
    wanted = SYNCHRONOUS_LEVELS[level]
    sqlite3.Connection.execute(conn, f"PRAGMA synchronous = {wanted}")

    def authorizer(action: int, arg1: Any, arg2: Any, _db: Any, _trigger: Any) -> int:
        if action == sqlite3.SQLITE_PRAGMA and arg1 == "synchronous" and arg2 is not None:
            value = str(arg2).strip().lower()
            if SYNCHRONOUS_LEVELS.get(value, value) not in (wanted, str(wanted)):
                return sqlite3.SQLITE_IGNORE
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorizer)


def _install_psycopg() -> None:
    try:
        import psycopg
    except ImportError:
        return

    class RecordingPgCursor(psycopg.Cursor):  # type: ignore[type-arg]
        def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(connection, *args, **kwargs)
            self._trace_id = next(_ids)
            EVENTS.append(("cursor", connection._trace_id, self._trace_id))

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
            EVENTS.append(("execute", self._trace_id, query, params, kwargs))
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            rows = list(params_seq)
            EVENTS.append(("executemany", self._trace_id, query, rows, kwargs))
            return super().executemany(query, rows, **kwargs)

        def fetchone(self) -> Any:
            EVENTS.append(("fetchone", self._trace_id))
            return super().fetchone()

        def fetchmany(self, size: int = 0) -> Any:
            EVENTS.append(("fetchmany", self._trace_id, size))
            return super().fetchmany(size)

        def fetchall(self) -> Any:
            EVENTS.append(("fetchall", self._trace_id))
            return super().fetchall()

        def __next__(self) -> Any:
            EVENTS.append(("next", self._trace_id))
            return super().__next__()

        def close(self) -> None:
            EVENTS.append(("cursor_close", self._trace_id))
            super().close()

    class RecordingPgConnection(psycopg.Connection):  # type: ignore[type-arg]
        autocommit = _recorded_setting("autocommit", psycopg.Connection)  # type: ignore[assignment]
        isolation_level = _recorded_setting("isolation_level", psycopg.Connection)  # type: ignore[assignment]
        read_only = _recorded_setting("read_only", psycopg.Connection)  # type: ignore[assignment]
        deferrable = _recorded_setting("deferrable", psycopg.Connection)  # type: ignore[assignment]

        def commit(self) -> None:
            EVENTS.append(("commit", self._trace_id))
            super().commit()

        def rollback(self) -> None:
            EVENTS.append(("rollback", self._trace_id))
            super().rollback()

        def close(self) -> None:
            EVENTS.append(("close", self._trace_id))
            super().close()

    def connect(conninfo: str = "", **kwargs: Any) -> Any:
        trace_id = next(_ids)
        # SQLAlchemy passes its own adapters map (``context``: JSON and inet types flowcli
        # does not bind); the replay uses psycopg's defaults, which bind the same values.
        recorded = {k: v for k, v in kwargs.items() if k != "context"}
        EVENTS.append(("connect", "psycopg", trace_id, (conninfo,), recorded))
        kwargs.setdefault("cursor_factory", RecordingPgCursor)
        conn = RecordingPgConnection.connect(conninfo, **kwargs)
        conn._trace_id = trace_id
        return conn

    psycopg.connect = connect  # type: ignore[assignment]


def run_flowcli(argv: list[str]) -> int:
    from flowcli.cli import main

    sys.argv = ["flowcli", *argv]
    try:
        main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


# --- replay ------------------------------------------------------------------------------


def replay(events: list[tuple[Any, ...]], target: str, synchronous: str | None) -> dict[str, Any]:
    """Make the recorded calls with the bare drivers against ``target``; time them."""
    pragma = None if synchronous is None else f"PRAGMA synchronous = {synchronous.upper()}"
    conns: dict[int, Any] = {}
    curs: dict[int, Any] = {}
    calls = 0
    start = time.perf_counter()
    for event in events:
        op = event[0]
        calls += 1
        if op == "execute":
            cur, sql, params = curs[event[1]], event[2], event[3]
            if pragma is not None and isinstance(sql, str) and _SYNCHRONOUS_PRAGMA.match(sql):
                sql = pragma
            if len(event) > 4:  # psycopg
                cur.execute(sql, params, **event[4])
            elif params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
        elif op == "fetchone":
            curs[event[1]].fetchone()
        elif op == "fetchall":
            curs[event[1]].fetchall()
        elif op == "next":
            next(curs[event[1]], None)
        elif op == "commit":
            conns[event[1]].commit()
        elif op == "cursor":
            curs[event[2]] = conns[event[1]].cursor()
        elif op == "cursor_close":
            curs.pop(event[1]).close()
        elif op == "fetchmany":
            cur = curs[event[1]]
            cur.fetchmany() if event[2] is None else cur.fetchmany(event[2])
        elif op == "rollback":
            conns[event[1]].rollback()
        elif op == "executemany":
            if len(event) > 4:
                curs[event[1]].executemany(event[2], event[3], **event[4])
            else:
                curs[event[1]].executemany(event[2], event[3])
        elif op == "executescript":
            curs[event[1]].executescript(event[2])
        elif op == "set":
            setattr(conns[event[1]], event[2], event[3])
        elif op == "close":
            conns[event[1]].close()
        elif op == "connect":
            driver, trace_id, args, kwargs = event[1], event[2], event[3], event[4]
            conns[trace_id] = _open(driver, target, args, kwargs)
        else:
            raise ValueError(f"sqltrace: unknown event {op!r}")
    elapsed = time.perf_counter() - start
    for conn in conns.values():
        with contextlib.suppress(Exception):  # already closed by the trace
            conn.close()
    return {"seconds": elapsed, "calls": calls}


def _open(driver: str, target: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if driver == "sqlite":
        kwargs = {k: v for k, v in kwargs.items() if k != "database"}
        if kwargs.get("uri"):
            raise ValueError("sqltrace: cannot replay a URI-opened (read-only) SQLite database")
        return sqlite3.connect(target, *args[1:], **kwargs)
    import psycopg
    from psycopg.conninfo import make_conninfo

    # connect()'s own options stay options; everything else is a connection parameter.
    options = {k: kwargs[k] for k in _PSYCOPG_OPTIONS if k in kwargs}
    params = {k: v for k, v in kwargs.items() if k not in _PSYCOPG_OPTIONS}
    params["dbname"] = target
    return psycopg.connect(make_conninfo(args[0] if args else "", **params), **options)


_PSYCOPG_OPTIONS = ("autocommit", "prepare_threshold", "context", "row_factory")


# --- what a trace says -------------------------------------------------------------------


def summary(events: list[tuple[Any, ...]]) -> dict[str, int]:
    """Counts of each kind of call (statements, fetches, commits) in a trace."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event[0]] = counts.get(event[0], 0) + 1
    return counts


def load(path: str) -> list[tuple[Any, ...]]:
    with open(path, "rb") as fh:
        events: list[tuple[Any, ...]] = pickle.load(fh)
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    rec = sub.add_parser("record", help="run flowcli, recording its DBAPI calls to TRACE")
    rec.add_argument("trace")
    rec.add_argument("--synchronous", choices=sorted(SYNCHRONOUS_LEVELS))
    run = sub.add_parser("run", help="run flowcli with the durability hook only")
    run.add_argument("--synchronous", choices=sorted(SYNCHRONOUS_LEVELS), required=True)
    rep = sub.add_parser("replay", help="replay TRACE on TARGET with the bare driver")
    rep.add_argument("trace")
    rep.add_argument("target")
    rep.add_argument("--synchronous", choices=sorted(SYNCHRONOUS_LEVELS))
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is flowcli's command line.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    flowcli_args = argv[split + 1 :]

    if args.mode == "replay":
        print(json.dumps(replay(load(args.trace), args.target, args.synchronous)))
        return 0
    record = args.mode == "record"
    _install_sqlite(record, args.synchronous)
    if record:
        _install_psycopg()
    code = run_flowcli(flowcli_args)
    if record:
        _synchronous_of_open_connections()
        with open(args.trace, "wb") as fh:
            pickle.dump(EVENTS, fh, protocol=pickle.HIGHEST_PROTOCOL)
        # Tell the caller the level SQLite really ran at, on stderr.
        print(json.dumps({"synchronous_seen": sorted(set(SYNCHRONOUS_SEEN))}), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
