"""Opening a database: resolving ``--db``/``FLOWCLI_DB``, SQLite pragmas, transactions.

``--db`` is a SQLite file path or a URL (``sqlite:///…``, ``postgresql…://…``). A plain
path is only ever a file name, never parsed as a URL (``my?mode=ro.db`` and ``c%41.db``
are files of exactly those names), and it must name a regular file or a place where one
can be created: a FIFO, a device, a directory or a symlink loop is refused in one line
before anything opens it.

Every SQLite connection gets ``foreign_keys=ON`` and a busy timeout; flowcli's own
databases also ``journal_mode=WAL`` (a database MRC owns keeps its journal mode).
The durability setting picks ``synchronous``: "normal" (NORMAL in WAL mode) survives a
crash or kill; "full" (FULL) also survives power loss. Write transactions on SQLite start with
``BEGIN IMMEDIATE`` so a writer takes the lock up front instead of failing halfway.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from flowcli.db.failures import translated
from flowcli.db.owner import OWNER_MRC, read_owner, read_owner_sqlite, sqlite_owner
from flowcli.db.revisions import VERSION_TABLE
from flowcli.errors import DatabaseError, UsageError, describe_os_error

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from flowcli.db.step_tx import StepTx

DEFAULT_DB_FILE = "flowcli.db"
DEFAULT_BUSY_TIMEOUT = 5.0
DURABILITY_LEVELS = ("normal", "full")
DEFAULT_DURABILITY = "normal"
SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseTarget(NamedTuple):
    """Where the database is: a SQLAlchemy URL, plus the file path when it is SQLite."""

    url: str
    path: Path | None  # None for non-SQLite URLs and in-memory SQLite

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def display(self) -> str:
        if self.path is not None:
            return str(self.path)
        return _mask_password(self.url)


def _mask_password(url: str) -> str:
    # Never print a password that came in a URL.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return url


# A URL starts with a scheme and "://"; anything else is a file path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
SUPPORTED_URL_SCHEMES = ("sqlite", "postgresql")  # with any driver: postgresql+psycopg://


def resolve_target(db: str | None) -> DatabaseTarget:
    """``--db`` wins, then ``FLOWCLI_DB``, then ``./flowcli.db``. A plain path is SQLite.

    Raises UsageError for an empty ``--db`` or an unsupported URL, and DatabaseError for
    a path that is not a regular file or a place to create one (check_database_path).
    """
    if db is not None and not db.strip():
        raise UsageError("--db must name a database file or URL; it is empty")
    value = db or os.environ.get("FLOWCLI_DB") or DEFAULT_DB_FILE
    if _URL.match(value):
        return _url_target(value)
    path = _absolute(value)
    check_database_path(path)
    return DatabaseTarget(f"sqlite:///{path}", path)


def _url_target(value: str) -> DatabaseTarget:
    scheme = value.split("://", 1)[0].lower()
    family = scheme.split("+", 1)[0]
    if family not in SUPPORTED_URL_SCHEMES:
        raise UsageError(
            f"unsupported database URL {_mask_password(value)!r}: flowcli works with SQLite "
            "(a file path, or sqlite:///PATH) and PostgreSQL (postgresql+psycopg://…)"
        )
    if family != "sqlite":
        return DatabaseTarget(value, None)
    raw = value.split(":///", 1)[1] if ":///" in value else ""
    if raw in ("", ":memory:") or raw.startswith("file:"):
        return DatabaseTarget(value, None)
    path = _absolute(raw.split("?", 1)[0])
    check_database_path(path)
    return DatabaseTarget(f"sqlite:///{path}", path)


def _absolute(value: str) -> Path:
    try:
        return Path(value).expanduser().resolve()
    except RuntimeError as exc:  # a symlink loop (before Python 3.13), or "~nobody"
        reason = "a symbolic link loop" if "loop" in str(exc).lower() else str(exc)
        raise DatabaseError(f"cannot open {value}: {reason}") from None
    except OSError as exc:
        raise DatabaseError(f"cannot open {describe_os_error(exc, value)}") from None
    except ValueError as exc:  # a NUL byte
        raise UsageError(f"--db cannot be used: {exc}") from None


def check_database_path(path: Path) -> None:
    """Refuse, in one line, a path that is neither a regular file nor a place for one.

    Looks with stat() first: opening a FIFO would block, and opening a device is no way
    to learn that it is not a database. Only a "regular" file of size 0 is read (one
    byte): /proc files look like that. A missing file is fine when its folder exists (a
    writing command creates it).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise DatabaseError(
                f"cannot create {path}: folder {path.parent} does not exist"
            ) from None
        return
    except OSError as exc:
        raise DatabaseError(f"cannot open {describe_os_error(exc, str(path))}") from None
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if info.st_size == 0:
            read_file_head(path, 1)  # /proc/self/mem, /proc/…/status: "regular", size 0
        return
    if stat.S_ISDIR(mode):
        kind = "a directory"
    elif stat.S_ISFIFO(mode):
        kind = "a FIFO (named pipe)"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = "not a regular file"
    raise DatabaseError(f"{path} is {kind}, not a database file")


def sqlite_file_state(path: Path) -> str:
    """Classify a SQLite target file: 'missing', 'empty' or 'sqlite'.

    Raises DatabaseError for anything flowcli must not touch: not a regular file, an
    unreadable file, a file that is not SQLite, a missing parent folder.
    """
    check_database_path(path)
    if not path.exists():
        return "missing"
    head = read_file_head(path, len(SQLITE_MAGIC))
    if not head:
        return "empty"
    if head != SQLITE_MAGIC:
        raise DatabaseError(f"{path} is not a SQLite database (unrecognised file header)")
    return "sqlite"


def read_file_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of an existing file; DatabaseError (one line) if unreadable.

    A file with content but a size of 0 is a /proc or /sys file, never a database.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(size)
            length = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise DatabaseError(f"cannot read {describe_os_error(exc, str(path))}") from None
    if head and length == 0:
        raise DatabaseError(f"{path} is not a file on disk (it has content but no size)")
    return head


def looks_truncated(path: Path) -> bool:
    """Whether a SQLite file is shorter than its own header says (cut off, or damaged).

    The header holds the page size (bytes 16-17) and, when valid (bytes 24-27 equal bytes
    92-95), the database size in pages (bytes 28-31).
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    if not head.startswith(SQLITE_MAGIC):
        return False
    if len(head) < 100:
        return True
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1) or size % page_size:
        return True
    pages = int.from_bytes(head[28:32], "big")
    return pages > 0 and head[24:28] == head[92:96] and size < pages * page_size


def _owned_or_new(cur: sqlite3.Cursor) -> bool:
    """True for a database without tables, or one flowcli manages and MRC does not own."""

    names = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not names:
        return True
    return VERSION_TABLE in names and sqlite_owner(cur) != OWNER_MRC


def _in_wal(cur: sqlite3.Cursor) -> bool:
    try:
        return str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
    except sqlite3.DatabaseError:
        return False


def wal_needs_immutable_open(path: Path) -> bool:
    """Whether a WAL database in a folder this process cannot write must be opened immutable.

    Reading a WAL database needs its ``-shm`` index, which SQLite creates beside the file.
    In a read-only folder it cannot; when no ``-wal`` holds committed changes the file
    alone is the whole database, so it is opened read-only and immutable (nobody can be
    writing it: a writer would need the same folder). When a ``-wal`` with changes is
    there but its ``-shm`` is not, those changes cannot be read: DatabaseError says why.

    A writable folder is decided without opening the file: closing a file this process
    opened releases every POSIX lock its SQLite connections hold on it (they are per
    process), and another process could then checkpoint or rewrite it under them.
    """
    if os.access(path.parent, os.W_OK):
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(20)
    except OSError:
        return False
    # Bytes 18 and 19 of the header are 2 in WAL mode.
    if len(head) < 20 or not head.startswith(SQLITE_MAGIC) or head[18:20] != b"\x02\x02":
        return False
    wal = Path(f"{path}-wal")
    shm = Path(f"{path}-shm")
    wal_size = wal.stat().st_size if wal.exists() else 0
    if wal_size == 0:
        return True
    if shm.exists():
        return False  # SQLite reads a WAL whose -shm exists, even in a read-only folder
    raise DatabaseError(
        f"cannot read {path}: it is in WAL mode and {wal.name} holds committed changes, "
        f"but {shm.name} is missing and folder {path.parent} is read-only, so SQLite cannot "
        "read them; make the folder writable (the next flowcli command folds the WAL into "
        "the database), or examine a copy with `flowcli db doctor`"
    )


class Database:
    """An opened database: the engine plus the knobs every command shares.

    A plain class, not a dataclass: every command builds one (docs/architecture.md,
    "What a one-step command loads")."""

    def __init__(
        self,
        target: DatabaseTarget,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        durability: str = DEFAULT_DURABILITY,
    ) -> None:
        self.target = target
        self.busy_timeout = busy_timeout
        # "normal" or "full": the synchronous level of every connection (configure_sqlite).
        self.durability = durability
        self._engine: Engine | None = None
        # Filled by the schema guard once it has checked this database in this process.
        self.schema_checked = False
        # Who owns the database (flowcli.db.owner), read once per process.
        self._owner: str | None = None
        # The bare sqlite3 connection of the direct reads (sqlite_read), opened on first use.
        self._sqlite: sqlite3.Connection | None = None
        self._immutable: bool | None = None
        # False for a view of a transaction someone else holds (engine.batch_run): its
        # reads must go through that transaction's connection, not a bare driver one.
        self.bare_driver = True

    def __repr__(self) -> str:
        return f"Database({self.target.display!r})"  # the URL's password masked

    @property
    def owner(self) -> str:
        """'flowcli' or 'mrc': whose conventions the rows follow (flowcli.db.owner)."""
        if self._owner is None:
            if self.direct_sqlite:
                with self.sqlite_read() as cur:
                    self._owner = read_owner_sqlite(cur)
            else:
                with self.read() as conn:
                    self._owner = read_owner(conn)
        return self._owner

    @property
    def mrc_owned(self) -> bool:

        return self.owner == OWNER_MRC

    @property
    def url(self) -> str:
        return self.target.url

    @property
    def is_sqlite(self) -> bool:
        return self.target.is_sqlite

    @property
    def direct_sqlite(self) -> bool:
        """Whether the hot paths use the bare sqlite3 driver: a SQLite file, so that the
        one-step commands need not import SQLAlchemy (an in-memory database exists only
        on SQLAlchemy's connection, so it keeps that)."""
        return self.bare_driver and self.target.is_sqlite and self.target.path is not None

    @property
    def immutable_open(self) -> bool:
        """wal_needs_immutable_open, looked at once, before this database's first
        connection: reading the file with open() and closing it while a connection is open
        would release every POSIX lock this process's SQLite connections hold on it (they
        are per process), and another process could then checkpoint or rewrite the file
        under them."""
        if self._immutable is None:
            path = self.target.path
            self._immutable = (
                self.target.is_sqlite and path is not None and wal_needs_immutable_open(path)
            )
        return self._immutable

    @contextmanager
    def sqlite_read(self) -> Iterator[sqlite3.Cursor]:
        """A cursor in a read transaction on the bare driver (direct_sqlite only)."""
        from flowcli.db.failures import translated

        assert self.target.path is not None
        with translated(self):
            if self._sqlite is None:
                self._sqlite = open_sqlite(
                    self.target.path,
                    self.busy_timeout,
                    self.durability,
                    immutable=self.immutable_open,
                )
            cur = self._sqlite.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            finally:
                cur.execute("ROLLBACK")
                cur.close()

    @contextmanager
    def step_read(self) -> Iterator[StepTx]:
        """A StepTx in a read transaction: on the bare sqlite3 driver for a SQLite file
        (no SQLAlchemy import), else over a SQLAlchemy connection."""
        from flowcli.db.step_tx import StepTx

        if self.direct_sqlite:
            with self.sqlite_read() as cur:
                yield StepTx(cur.connection, "sqlite")
        else:
            with self.read() as conn:
                yield StepTx.over(conn)

    def step_connection(self) -> tuple[Any, str, Callable[[], None]]:
        """A DBAPI connection of its own for a runner's steps: (connection, dialect name,
        close). The bare sqlite3 driver on a SQLite file; SQLAlchemy's pool elsewhere."""
        from flowcli.db.failures import translated

        with translated(self):
            if self.direct_sqlite:
                assert self.target.path is not None
                raw = open_sqlite(
                    self.target.path,
                    self.busy_timeout,
                    self.durability,
                    immutable=self.immutable_open,
                )
                return raw, "sqlite", raw.close
            pooled = self.engine.raw_connection()
            return pooled.driver_connection, self.engine.dialect.name, pooled.close

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_db_engine(
                self.target, self.busy_timeout, self.durability, self.immutable_open
            )
        return self._engine

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a (deferred) read transaction, rolled back at the end."""

        with translated(self), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One short write transaction: BEGIN IMMEDIATE on SQLite, committed on success."""

        with translated(self):
            eng = self.engine.execution_options(flowcli_write=True)
            with eng.begin() as conn:
                yield conn

    def dispose(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def configure_sqlite(
    dbapi_conn: sqlite3.Connection,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    durability: str = DEFAULT_DURABILITY,
) -> None:
    """The pragmas of every SQLite connection flowcli opens (with SQLAlchemy or without)."""
    # Take transaction control away from the driver so BEGIN is ours to emit.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    cur.execute("PRAGMA foreign_keys = ON")
    # A read-only file or folder cannot switch to WAL; reads still work. Another
    # application's database (MRC's, adopted or not) is left in its own journal mode:
    # switching rewrites its header and leaves -wal/-shm files beside MRC's file.
    wal = False
    with contextlib.suppress(sqlite3.DatabaseError):
        if _owned_or_new(cur):
            wal = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    if durability == "full":
        # Every commit reaches the disk before it returns: it survives power loss.
        cur.execute("PRAGMA synchronous = FULL")
    elif wal or _in_wal(cur):
        # NORMAL survives a crash or kill in WAL mode only; a rollback journal keeps FULL.
        cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def open_sqlite(
    path: Path,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    durability: str = DEFAULT_DURABILITY,
    *,
    immutable: bool = False,
) -> sqlite3.Connection:
    """A bare sqlite3 connection to a SQLite file, set up as SQLAlchemy's would be.

    ``immutable``: wal_needs_immutable_open(path), decided by the caller before it opened
    any connection to the file (Database.immutable_open).
    """
    if immutable:
        # Read-only: writes fail with SQLite's own "readonly database" error.
        uri = f"file:{quote(str(path))}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, timeout=busy_timeout, check_same_thread=False, uri=True)
    else:
        # The path goes in as it is, never parsed as a URI ("?" and "%41" are file names).
        conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
    configure_sqlite(conn, busy_timeout, durability)
    return conn


def _quiet_sqlalchemy_logs() -> None:
    """Keep SQLAlchemy's own log records off stderr.

    With no handler configured, Python prints any error record with its traceback (the
    "last resort" handler): a Ctrl-C inside a PostgreSQL query made the pool log
    "Exception during reset" with a traceback after flowcli's one line. flowcli reports
    database errors itself, at its error boundary; ``--debug`` shows tracebacks there.
    """
    import logging

    logger = logging.getLogger("sqlalchemy")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def create_db_engine(
    target: DatabaseTarget,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    durability: str = DEFAULT_DURABILITY,
    immutable: bool | None = None,
) -> Engine:
    from sqlalchemy import URL, create_engine, event
    from sqlalchemy.exc import ArgumentError

    _quiet_sqlalchemy_logs()
    if not target.is_sqlite:
        try:
            return create_engine(target.url, pool_pre_ping=True)
        except ArgumentError as exc:  # a malformed URL, an unknown driver name
            raise DatabaseError(f"cannot use database {target.display}: {exc}") from None

    url: str | URL = target.url
    if target.path is not None:
        # The path goes in as it is: a URL string would be parsed again ("?" starts a
        # query, "%41" is "A"), and flowcli would open some other file.
        url = URL.create("sqlite", database=str(target.path))
        if immutable if immutable is not None else wal_needs_immutable_open(target.path):
            # Read-only: writes fail with SQLite's own "readonly database" error.
            url = f"sqlite:///file:{quote(str(target.path))}?mode=ro&immutable=1&uri=true"
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        configure_sqlite(dbapi_conn, busy_timeout, durability)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("flowcli_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
