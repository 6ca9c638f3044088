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


PG_DUMP_TIMEOUT_S = 3600


def pg_command_args(url: str) -> tuple[str, list[str], dict[str, str]]:
    """libpq connection string, ``--schema`` options for a search_path in the URL, and
    the environment (the password travels in PGPASSWORD, never on a command line)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    schemas: list[str] = []
    options = u.query.get("options")
    for opt in [options] if isinstance(options, str) else list(options or []):
        for part in opt.split():
            part = part.removeprefix("-c")
            if part.startswith("search_path="):
                schemas += [s.strip().strip('"') for s in part.split("=", 1)[1].split(",")]
    plain = u.set(drivername="postgresql", password=None, query={})
    extra = [f"--schema={s}" for s in schemas if s and s != "public"]
    return plain.render_as_string(hide_password=False), extra, env


def pg_tool(name: str, hint: str = "install PostgreSQL's client tools") -> str:
    exe = shutil.which(name)
    if exe is None:
        raise DatabaseError(f"{name} is not on PATH: {hint}")
    return exe


_PLAIN_DUMP_END = b"-- PostgreSQL database dump complete"


def dump_postgres(
    url: str,
    dest: Path,
    *,
    plain: bool = False,
    hint: str = "install PostgreSQL's client tools",
) -> None:
    """A verified ``pg_dump`` of the database at ``dest``: written under a temporary name,
    checked, then renamed into place. The one way flowcli dumps PostgreSQL: `db backup`
    and the copy `db restore` keeps (custom format, read back whole by ``pg_restore``),
    and the doctor's and the schema commands' safety copy (``plain`` SQL a person can
    read and replay with psql, checked to end with pg_dump's completion line)."""
    conninfo, schemas, env = pg_command_args(url)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        dump = subprocess.run(
            [
                pg_tool("pg_dump", hint),
                "--format=plain" if plain else "--format=custom",
                "--no-owner",
                *schemas,
                "-f",
                str(partial),
                conninfo,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=PG_DUMP_TIMEOUT_S,
        )
        if dump.returncode != 0:
            raise DatabaseError(f"pg_dump failed: {dump.stderr.strip()[:300]}; nothing was written")
        if plain:
            _check_plain_dump(partial, dest)
            _durable_rename(partial, dest)
            return
        # Reading the whole archive back (every data block) is pg_restore's own check.
        check = subprocess.run(
            [pg_tool("pg_restore", hint), "--file=/dev/null", str(partial)],
            capture_output=True,
            text=True,
            env=env,
            timeout=PG_DUMP_TIMEOUT_S,
        )
        if check.returncode != 0:
            raise DatabaseError(
                f"the dump did not read back ({check.stderr.strip()[:300]}); {dest} was not written"
            )
        _durable_rename(partial, dest)
    except subprocess.TimeoutExpired:
        raise DatabaseError(
            f"pg_dump took longer than {PG_DUMP_TIMEOUT_S} s; nothing was written"
        ) from None
    finally:
        partial.unlink(missing_ok=True)


def _check_plain_dump(partial: Path, dest: Path) -> None:
    # pg_dump writes its completion line last: a dump cut short (disk full, killed) lacks it.
    with partial.open("rb") as dump:
        dump.seek(max(0, partial.stat().st_size - 512))
        complete = _PLAIN_DUMP_END in dump.read()
    if not complete:
        raise DatabaseError(f"the dump is incomplete (no completion line); {dest} was not written")


def pg_backup(url: str) -> Path:
    """The safety copy of a PostgreSQL database, in the current folder, before a repair or
    a schema command: a plain SQL dump, checked complete before anything changes."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database or "postgres"
    dest = Path.cwd() / f"{name}.doctor-{datetime.now():%Y%m%dT%H%M%S}.sql"
    dump_postgres(url, dest, plain=True, hint="install it, or repair with --no-backup")
    return dest
