"""The safety copy taken before anything rewrites a database: doctor repairs, doctor's
destructive fixes and restore keep one, unless told ``--no-backup``.

SQLite: a copy through SQLite's backup API, verified (integrity_check, every table present)
and only then given its ``.doctor-STAMP.bak`` name, so a copy killed midway never looks
finished. PostgreSQL: a ``pg_dump`` in the current folder.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from flowcli.errors import DatabaseError


def backup_path_for(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    candidate = path.with_name(f"{path.name}.doctor-{stamp}.bak")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.doctor-{stamp}-{n}.bak")
        n += 1
    return candidate


def make_backup(path: Path, busy_timeout: float) -> Path:
    """A consistent copy through SQLite's backup API, verified, then given its final name.

    The copy is written as ``….doctor-STAMP.partial`` and renamed to ``….bak`` only once
    ``integrity_check`` passes and it holds every table of the source: a doctor killed
    while copying leaves a ``.partial`` file, never a ``.bak`` that looks verified (an
    empty file passes integrity_check).
    """
    dest = backup_path_for(path)
    partial = dest.with_name(dest.name.removesuffix(".bak") + ".partial")
    problem: str | None = None
    try:
        source = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=busy_timeout)
        try:
            target = sqlite3.connect(partial)
            try:
                source.backup(target)
            finally:
                target.close()
            expected = _table_names(source)
        finally:
            source.close()
        problem = _backup_problem(partial, expected)
        if problem is None:
            _durable_rename(partial, dest)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise DatabaseError(
            f"could not back up {path} to {dest} ({exc}); nothing was changed "
            "(free some space, or use --no-backup at your own risk)"
        ) from None
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise DatabaseError(
            f"the backup of {path} failed its check ({problem}); nothing was changed"
        )
    return dest


def _table_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _backup_problem(copy: Path, expected_tables: set[str]) -> str | None:
    check = sqlite3.connect(f"file:{quote(str(copy))}?mode=ro", uri=True)
    try:
        result = [r[0] for r in check.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            return f"integrity_check: {result[0]}"
        missing = expected_tables - _table_names(check)
        if missing:
            return f"tables missing from the copy: {', '.join(sorted(missing))}"
    finally:
        check.close()
    return None


def _durable_rename(partial: Path, dest: Path) -> None:
    """Flush the copy, rename it into place, flush the folder: all or nothing on disk."""
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, dest)
    folder = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def pg_backup(url: str) -> Path:
    """A pg_dump of the database in the current folder (PostgreSQL)."""
    exe = shutil.which("pg_dump")
    if exe is None:
        raise DatabaseError("pg_dump is not on PATH: install it, or repair with --no-backup")
    from sqlalchemy.engine import make_url

    u = make_url(url)
    dest = Path.cwd() / f"{u.database}.doctor-{datetime.now():%Y%m%dT%H%M%S}.sql"
    plain = u.set(drivername="postgresql").render_as_string(hide_password=False)
    proc = subprocess.run(
        [exe, "--no-owner", "-f", str(dest), plain], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise DatabaseError(f"pg_dump failed: {proc.stderr.strip()[:300]}; nothing was changed")
    return dest
