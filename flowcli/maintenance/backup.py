"""``db backup`` and ``db restore``: whole-database copies, made online and checked.

A SQLite backup goes through SQLite's backup API in one step, inside one read
transaction: under WAL it does not block the sessions that keep running, and it is the
consistent state of one moment. It is written beside its destination, checked with
``integrity_check``, then renamed into place, so a failed backup never leaves a file
that looks like one. PostgreSQL is dumped with ``pg_dump`` (custom format) and read
back whole with ``pg_restore``.

A restore refuses while any other process has the database open (seen in /proc, and
by SQLite's own locks), keeps the current file first with the doctor's verified backup,
then copies the backup into the database through one exclusive connection, so a crash
mid-restore rolls back to the file as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flowcli.errors import DatabaseBusyError, DatabaseError, UsageError
from flowcli.maintenance.safety_copy import (
    PG_DUMP_TIMEOUT_S,
    dump_postgres,
    pg_command_args,
    pg_tool,
)

if TYPE_CHECKING:
    from flowcli.db.connection import Database


@dataclass
class BackupResult:
    path: str
    bytes: int
    method: str
    verified: str
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "bytes": self.bytes,
            "method": self.method,
            "verified": self.verified,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _check_destination(dest: Path, source: Path | None) -> None:
    if dest.exists() or dest.is_symlink():
        raise UsageError(f"{dest} already exists; choose a new file for the backup")
    if not dest.parent.is_dir():
        raise UsageError(f"cannot write {dest}: folder {dest.parent} does not exist")
    if source is not None and dest.resolve() == source.resolve():
        raise UsageError("the backup cannot be the database itself")


def _fsync_path(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def integrity(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` of a SQLite file, opened read-only."""
    con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


def backup_database(db: Database, dest: Path) -> BackupResult:
    """An online, consistent, verified copy of the database at ``dest`` (a new file)."""
    started = time.perf_counter()
    if not db.is_sqlite:
        return _pg_backup(db, dest, started)
    source = db.target.path
    if source is None:
        raise UsageError("an in-memory database cannot be backed up")
    _check_destination(dest, source)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        src = sqlite3.connect(
            f"file:{quote(str(source))}?mode=ro", uri=True, timeout=db.busy_timeout
        )
        try:
            out = sqlite3.connect(partial)
            try:
                # One step (all pages) inside one read transaction: a consistent moment,
                # and under WAL the writers carry on meanwhile.
                src.backup(out)
            finally:
                out.close()
        finally:
            src.close()
        problems = integrity(partial)
        if problems != ["ok"]:
            raise DatabaseError(
                f"the backup failed its integrity check ({'; '.join(problems[:3])}); "
                f"{dest} was not written"
            )
        _fsync_path(partial)
        os.replace(partial, dest)
        _fsync_path(dest.parent)
    except sqlite3.Error as exc:
        raise DatabaseError(f"could not back up {source}: {exc}; {dest} was not written") from None
    except OSError as exc:
        raise DatabaseError(
            f"could not write the backup {dest}: {exc.strerror or exc}; nothing was written"
        ) from None
    finally:
        for leftover in (partial, Path(f"{partial}-journal"), Path(f"{partial}-wal")):
            leftover.unlink(missing_ok=True)
    return BackupResult(
        str(dest),
        dest.stat().st_size,
        "sqlite backup API",
        "integrity_check: ok",
        time.perf_counter() - started,
    )


# --- PostgreSQL ------------------------------------------------------------------------


def _pg_backup(db: Database, dest: Path, started: float) -> BackupResult:
    _check_destination(dest, None)
    dump_postgres(db.url, dest)
    return BackupResult(
        str(dest),
        dest.stat().st_size,
        "pg_dump (custom format)",
        "pg_restore read it back",
        time.perf_counter() - started,
    )


# --- restore ---------------------------------------------------------------------------


def processes_holding(path: Path) -> list[tuple[int, str]]:
    """Other processes with the database (or its -wal/-shm) open: (pid, command line).

    Read from /proc where there is one; elsewhere the empty list (the lock probe in
    ``restore_database`` still catches a process that holds SQLite's locks).
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    names = {str(path), f"{path}-wal", f"{path}-shm", f"{path}-journal"}
    me = os.getpid()
    found: list[tuple[int, str]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in names:
                try:
                    raw = (entry / "cmdline").read_bytes()[:200]
                except OSError:
                    raw = b""
                cmd = " ".join(p.decode("utf-8", "replace") for p in raw.split(b"\0") if p)
                found.append((int(entry.name), cmd))
                break
    return found


def _lock_exclusively(path: Path) -> sqlite3.Connection:
    """A connection that alone holds the database (SQLite's exclusive locking mode), or
    DatabaseBusyError when another connection has it open or locked."""
    con = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        con.execute("PRAGMA locking_mode = EXCLUSIVE")
        con.execute("BEGIN EXCLUSIVE")
        con.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        con.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseBusyError(
                f"{path} is in use by another process (it holds the database open); stop it "
                "first; nothing was changed"
            ) from None
        raise
    return con


def _fingerprint(path: Path) -> tuple[Any, ...]:
    """What any write changes: the file's size and time, or its WAL's size (a WAL that is
    absent and one that is empty are the same: opening the database creates one)."""
    st = path.stat()
    try:
        wal = Path(f"{path}-wal").stat().st_size
    except FileNotFoundError:
        wal = 0
    return (st.st_size, st.st_mtime_ns, wal)


@dataclass
class RestoreResult:
    path: str
    source: str
    kept: str | None
    verified: str
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.path,
            "restored_from": self.source,
            "previous_kept_as": self.kept,
            "verified": self.verified,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def check_restore_source(source: Path) -> None:
    from flowcli.db.connection import sqlite_file_state

    if not source.is_file():
        raise UsageError(f"backup {source} does not exist or is not a file")
    if sqlite_file_state(source) != "sqlite":
        raise UsageError(f"{source} is not a SQLite database (a flowcli backup is one)")
    try:
        problems = integrity(source)
    except sqlite3.Error as exc:
        raise DatabaseError(
            f"cannot read the backup {source}: {exc}; nothing was changed"
        ) from None
    if problems != ["ok"]:
        raise DatabaseError(
            f"the backup {source} fails its integrity check ({'; '.join(problems[:3])}); "
            "nothing was changed"
        )


def holders_message(path: Path, holders: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"{pid} ({cmd[:60]})" if cmd else str(pid) for pid, cmd in holders[:3])
    return f"{path} is open in process {shown}; stop it before restoring; nothing was changed"


def restore_database(db: Database, source: Path) -> RestoreResult:
    """Replace the SQLite database's contents with the backup at ``source``."""
    from flowcli.maintenance.safety_copy import make_backup

    started = time.perf_counter()
    if not db.is_sqlite:
        return _pg_restore(db, source, started)
    if db.target.path is None:
        raise UsageError("an in-memory database cannot be restored")
    path = db.target.path
    db.dispose()  # this process's own pooled connections must not count as holders
    check_restore_source(source)
    if path.exists() and source.resolve() == path.resolve():
        raise UsageError("the backup to restore is the database itself")
    kept: str | None = None
    if path.exists() and path.stat().st_size > 0:
        holders = processes_holding(path)
        if holders:
            raise DatabaseBusyError(holders_message(path, holders))
        _lock_exclusively(path).close()
        before = _fingerprint(path)
        kept = str(make_backup(path, db.busy_timeout))
    else:
        before = None
    dest = _lock_exclusively(path)
    try:
        if (before is not None and _fingerprint(path) != before) or processes_holding(path):
            raise DatabaseBusyError(
                f"{path} changed while its backup was being made (another process opened "
                f"it); nothing was changed (the backup {kept} was kept)"
            )
        was_wal = str(dest.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        if was_wal:
            # A backup into a WAL database must keep its page size; leaving WAL for the
            # copy lifts that (the exclusive lock makes the switch safe).
            dest.execute("PRAGMA journal_mode = DELETE")
        src = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True)
        try:
            src.backup(dest)
        finally:
            src.close()
        if was_wal:
            dest.execute("PRAGMA journal_mode = WAL")
        problems = [str(r[0]) for r in dest.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        raise DatabaseError(
            f"the restore failed ({exc}); the database rolled back to what it was"
            + (f" (also kept as {kept})" if kept else "")
        ) from None
    finally:
        dest.close()
    if problems != ["ok"]:
        raise DatabaseError(
            f"the restored database fails its integrity check ({'; '.join(problems[:3])}); "
            f"the previous file is kept as {kept}"
        )
    return RestoreResult(
        str(path), str(source), kept, "integrity_check: ok", time.perf_counter() - started
    )


def check_pg_dump(source: Path, env: dict[str, str] | None = None) -> None:
    """The file is a pg_dump archive that reads back whole (pg_restore lists it)."""
    if not source.is_file():
        raise UsageError(f"backup {source} does not exist or is not a file")
    listed = subprocess.run(
        [pg_tool("pg_restore"), "--list", str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=PG_DUMP_TIMEOUT_S,
    )
    if listed.returncode != 0:
        raise UsageError(
            f"{source} is not a pg_dump archive `flowcli db backup` made "
            f"({listed.stderr.strip()[:200]}); nothing was changed"
        )


def _pg_other_sessions(db: Database) -> list[tuple[int, str]]:
    """Other connections to the database (pid, application): a restore must not pull the
    tables from under them."""
    from sqlalchemy import text

    with db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT pid, coalesce(application_name, '') FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    return [(int(pid), str(app)) for pid, app in rows]


def _pg_restore(db: Database, source: Path, started: float) -> RestoreResult:
    """Replace the PostgreSQL database's contents with a pg_dump archive: refused while
    another connection uses the database; the current contents are dumped (and verified)
    first; the archive is applied in one transaction, so a failure changes nothing."""
    conninfo, schemas, env = pg_command_args(db.url)
    check_pg_dump(source, env)
    holders = _pg_other_sessions(db)
    if holders:
        shown = ", ".join(f"{pid} ({app})" if app else str(pid) for pid, app in holders[:3])
        raise DatabaseBusyError(
            f"the database is in use by {len(holders)} other connection(s): {shown}; stop "
            "them before restoring; nothing was changed"
        )
    db.dispose()
    from sqlalchemy.engine import make_url

    name = make_url(db.url).database or "postgres"
    kept_path = Path.cwd() / f"{name}.restore-{time.strftime('%Y%m%dT%H%M%S')}.dump"
    n = 1
    while kept_path.exists():
        kept_path = Path.cwd() / f"{name}.restore-{time.strftime('%Y%m%dT%H%M%S')}-{n}.dump"
        n += 1
    kept = _pg_backup(db, kept_path, time.perf_counter()).path
    applied = subprocess.run(
        [
            pg_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            *schemas,
            f"--dbname={conninfo}",
            str(source),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=PG_DUMP_TIMEOUT_S,
    )
    if applied.returncode != 0:
        raise DatabaseError(
            f"pg_restore failed ({applied.stderr.strip()[:300]}); the database rolled back to "
            f"what it was (also kept as {kept})"
        )
    return RestoreResult(
        db.target.display,
        str(source),
        kept,
        "pg_restore in one transaction",
        time.perf_counter() - started,
    )
