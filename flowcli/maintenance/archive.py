"""The prune archive: gzip JSON lines, one session per line, verified by reading back.

Layout: a header line, then one gzip member per batch holding the batch's session
lines and a ``batch`` trailer (session ids, row counts, SHA-256 of the session lines),
then a ``manifest`` member with the totals. ``zcat`` reads it as one stream of lines;
each member is complete on disk (written, fsynced and read back) before the rows it
holds are deleted, so an interrupted prune leaves an archive whose complete batches
all verify and whose torn tail, if any, holds only sessions that were not deleted.

A session line carries every column of the session row and of its session roles, the
roles they point to, its messages and its step logs (``logs``: the rows of ``flowcli
logs ID --json``), as stored: timestamps as the database keeps them, JSON columns as
their text. Nothing is re-shaped, so a restore writes back exactly what was there.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from flowcli.errors import ArchiveError
from flowcli.maintenance.selection import in_clause

FORMAT = "flowcli-archive"
FORMAT_VERSION = 1
# A line is one session; one bigger than this is not one flowcli wrote (and reading it
# whole could exhaust memory), so the reader refuses it.
MAX_LINE_BYTES = 512 * 1024 * 1024
# Row lists of a session line, keyed by the table they come from.
RECORD_TABLES = {
    "session_roles": "session_roles",
    "messages": "messages",
    "logs": "step_execution_logs",
}
COUNTED = ("sessions", "session_roles", "messages", "step_execution_logs")
COMPRESS_LEVEL = 6


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot archive a {type(value).__name__}")


def encode_line(obj: dict[str, Any]) -> bytes:
    return (
        json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_json_value) + "\n"
    ).encode("utf-8")


def decode_value(value: Any) -> Any:
    """A column value from a line as the database takes it (bytes come back as bytes)."""
    if isinstance(value, dict) and set(value) == {"$base64"}:
        return base64.b64decode(value["$base64"])
    return value


# --- reading sessions out of the database --------------------------------------------


def _rows(conn: Connection, sql: str) -> list[dict[str, Any]]:
    result = conn.execute(text(sql))
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.fetchall()]


def read_session_records(
    conn: Connection, session_ids: Sequence[int], *, logs_only: bool = False
) -> list[dict[str, Any]]:
    """One record per session (in the order given): its row and every row that belongs
    to it, all columns as stored. ``logs_only``: the session row and its logs only."""
    ids = in_clause(session_ids)
    sessions = {int(r["id"]): r for r in _rows(conn, f"SELECT * FROM sessions WHERE id IN {ids}")}
    records: dict[int, dict[str, Any]] = {
        sid: {
            "kind": "session",
            "logs_only": logs_only,
            "session": sessions[sid],
            "session_roles": [],
            "roles": [],
            "messages": [],
            "logs": [],
        }
        for sid in session_ids
        if sid in sessions
    }
    logs = _rows(
        conn,
        f"SELECT * FROM step_execution_logs WHERE session_id IN {ids} "
        "ORDER BY session_id, execution_order, id",
    )
    for row in logs:
        records[int(row["session_id"])]["logs"].append(row)
    if not logs_only:
        for row in _rows(
            conn, f"SELECT * FROM session_roles WHERE session_id IN {ids} ORDER BY session_id, id"
        ):
            records[int(row["session_id"])]["session_roles"].append(row)
        for row in _rows(
            conn, f"SELECT * FROM messages WHERE session_id IN {ids} ORDER BY session_id, id"
        ):
            records[int(row["session_id"])]["messages"].append(row)
        role_ids = sorted(
            {int(sr["role_id"]) for r in records.values() for sr in r["session_roles"]}
        )
        roles = (
            {
                int(r["id"]): r
                for r in _rows(conn, f"SELECT * FROM roles WHERE id IN {in_clause(role_ids)}")
            }
            if role_ids
            else {}
        )
        for record in records.values():
            wanted = sorted({int(sr["role_id"]) for sr in record["session_roles"]})
            record["roles"] = [roles[r] for r in wanted if r in roles]
    return [records[sid] for sid in session_ids if sid in records]


def record_counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Rows per table a batch of records holds (what deleting them removes)."""
    counts = dict.fromkeys(COUNTED, 0)
    for record in records:
        if not record.get("logs_only"):
            counts["sessions"] += 1
        for key, table in RECORD_TABLES.items():
            counts[table] += len(record.get(key) or [])
    return counts


# --- writing -------------------------------------------------------------------------


@dataclass
class ArchiveTotals:
    sessions: int = 0
    batches: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    compressed_bytes: int = 0


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ArchiveWriter:
    """Appends verified batches to a new archive file (never overwrites one)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.totals = ArchiveTotals()
        self._digest = hashlib.sha256()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("xb")
        except FileExistsError:
            raise ArchiveError(f"archive {path} already exists; choose another path") from None
        except OSError as exc:
            raise ArchiveError(f"cannot create archive {path}: {exc.strerror or exc}") from None
        self._append(
            encode_line({"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, **header})
        )
        _fsync_dir(path.parent)

    def _append(self, payload: bytes) -> tuple[int, int]:
        # Level 6 (gzip's own default): most of level 9's ratio at a fraction of its time.
        member = gzip.compress(payload, compresslevel=COMPRESS_LEVEL, mtime=0)
        try:
            offset = self._fh.tell()
            self._fh.write(member)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise ArchiveError(
                f"cannot write archive {self.path}: {exc.strerror or exc}; nothing more was deleted"
            ) from None
        self.totals.compressed_bytes += len(member)
        return offset, len(member)

    def write_batch(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Write one batch as its own gzip member, then read it back from the file and
        check its row counts and checksum. Raises ArchiveError unless it verifies."""
        lines = [encode_line(r) for r in records]
        body = b"".join(lines)
        digest = hashlib.sha256(body).hexdigest()
        counts = record_counts(records)
        ids = [int(r["session"]["id"]) for r in records]
        trailer = {
            "kind": "batch",
            "batch": self.totals.batches + 1,
            "sessions": ids,
            "rows": counts,
            "sha256": digest,
        }
        offset, length = self._append(body + encode_line(trailer))
        self._verify_member(offset, length, trailer)
        self._digest.update(body)
        self.totals.batches += 1
        self.totals.sessions += len(records)
        for key, n in counts.items():
            self.totals.rows[key] += n
        return trailer

    def _verify_member(self, offset: int, length: int, trailer: dict[str, Any]) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(offset)
                raw = gzip.decompress(fh.read(length))
        except (OSError, EOFError, zlib.error) as exc:
            raise ArchiveError(
                f"archive {self.path} did not read back ({exc}); nothing was deleted"
            ) from None
        lines = raw.splitlines(keepends=True)
        if not lines:
            raise ArchiveError(f"archive {self.path}: batch read back empty; nothing was deleted")
        check = BatchCheck(strict=False)
        for line in lines[:-1]:
            check.add(line)
        problem = check.close(json.loads(lines[-1]))
        if problem is None and check.trailer != trailer:
            problem = "its trailer differs from what was written"
        if problem:
            raise ArchiveError(
                f"archive {self.path}: batch {trailer['batch']} failed verification ({problem}); "
                "nothing of it was deleted"
            )

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        manifest = {
            "kind": "manifest",
            "sessions": self.totals.sessions,
            "batches": self.totals.batches,
            "rows": self.totals.rows,
            "sha256": self._digest.hexdigest(),
            **(extra or {}),
        }
        self._append(encode_line(manifest))
        self.close()
        return manifest

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
            _fsync_dir(self.path.parent)


# --- reading -------------------------------------------------------------------------


class BatchCheck:
    """Accumulates one batch's session lines and checks them against its trailer."""

    def __init__(self, *, strict: bool = True) -> None:
        self.records: list[dict[str, Any]] = []
        self._digest = hashlib.sha256()
        self.trailer: dict[str, Any] | None = None
        # Strict: every cell's shape is checked too (an archive about to be restored is
        # untrusted input). The writer's read-back compares counts and checksum only.
        self.strict = strict

    def add(self, line: bytes, data: Any = None) -> None:
        self._digest.update(line)
        data = data if data is not None else _loads(line)
        self.records.append(check_session_record(data) if self.strict else data)

    def close(self, trailer: Any) -> str | None:
        """None when the batch matches its trailer, else what is wrong."""
        if not isinstance(trailer, dict) or trailer.get("kind") != "batch":
            return "its trailer line is missing"
        self.trailer = trailer
        if trailer.get("sha256") != self._digest.hexdigest():
            return "checksum mismatch"
        if trailer.get("rows") != record_counts(self.records):
            return "row counts differ from its trailer"
        if trailer.get("sessions") != [r["session"].get("id") for r in self.records]:
            return "session ids differ from its trailer"
        return None


def _fail(line_no: int, why: str) -> ArchiveError:
    return ArchiveError(f"archive line {line_no}: {why}")


def _check_rows(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ArchiveError(f"a session line's {what!r} is not a list of rows")
    for row in value:
        for key, cell in row.items():
            if not isinstance(key, str):
                raise ArchiveError(f"a row of {what!r} has a non-text column name")
            if isinstance(cell, list) or (isinstance(cell, dict) and set(cell) != {"$base64"}):
                raise ArchiveError(f"column {key!r} of {what!r} holds a nested value")
    return value


def _loads(line: bytes) -> Any:
    try:
        return json.loads(line)
    except RecursionError:
        raise ArchiveError("a line is nested too deeply") from None
    except ValueError as exc:
        raise ArchiveError(f"a line is not JSON ({exc})") from None


def check_session_record(data: Any) -> dict[str, Any]:
    """A decoded session line with its shape checked (the restore trusts nothing more)."""
    if not isinstance(data, dict) or data.get("kind") != "session":
        raise ArchiveError("a batch holds a line that is not a session")
    session = data.get("session")
    if (
        not isinstance(session, dict)
        or isinstance(session.get("id"), bool)
        or not isinstance(session.get("id"), int)
    ):
        raise ArchiveError("a session line has no session row with an integer id")
    _check_rows([session], "session")
    for key in ("session_roles", "roles", "messages", "logs"):
        data[key] = _check_rows(data.get(key, []), key)
    data["logs_only"] = bool(data.get("logs_only"))
    return data


@dataclass
class ArchiveSummary:
    path: str
    header: dict[str, Any] = field(default_factory=dict)
    batches: int = 0
    sessions: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    manifest: dict[str, Any] | None = None
    # The archive ends in a batch that was never completed (an interrupted prune): the
    # sessions in it were not deleted, so nothing is missing.
    torn_tail: bool = False

    @property
    def complete(self) -> bool:
        return self.manifest is not None and not self.torn_tail

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "header": self.header,
            "batches": self.batches,
            "sessions": self.sessions,
            "rows": self.rows,
            "complete": self.complete,
            "torn_tail": self.torn_tail,
            "manifest": self.manifest,
        }


def iter_batches(
    path: Path, summary: ArchiveSummary | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Each complete, verified batch's session records, in order.

    A damaged member (bad CRC, bad deflate data, a line failing its batch's checksum)
    raises ArchiveError; a stream that simply stops (a prune killed mid-write) ends the
    iteration with ``summary.torn_tail`` set.
    """
    summary = summary or ArchiveSummary(str(path))
    digest = hashlib.sha256()
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise ArchiveError(f"cannot open archive {path}: {exc.strerror or exc}") from None
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as fh:
        line_no = 0
        pending: BatchCheck | None = None
        while True:
            try:
                line = fh.readline(MAX_LINE_BYTES + 1)
            except EOFError:
                summary.torn_tail = True
                return
            except (OSError, zlib.error) as exc:
                if line_no == 0:
                    raise ArchiveError(
                        f"{path} is not a flowcli archive (not gzip: {exc})"
                    ) from None
                raise ArchiveError(
                    f"archive {path} is damaged after line {line_no}: {exc}"
                ) from None
            if not line:
                if pending is not None and pending.records:
                    summary.torn_tail = True
                return
            line_no += 1
            if len(line) > MAX_LINE_BYTES:
                raise _fail(line_no, f"longer than {MAX_LINE_BYTES:,} bytes")
            if not line.endswith(b"\n"):
                summary.torn_tail = True
                return
            if line_no == 1:
                header = _parse_meta(line, line_no)
                if header.get("kind") != "header" or header.get("format") != FORMAT:
                    raise ArchiveError(f"{path} is not a flowcli archive (no header line)")
                if header.get("version") != FORMAT_VERSION:
                    raise ArchiveError(
                        f"archive {path} has format version {header.get('version')!r}; this "
                        f"flowcli reads version {FORMAT_VERSION}"
                    )
                summary.header = header
                continue
            meta = _parse_meta(line, line_no)
            if meta.get("kind") == "session":
                if summary.manifest is not None:
                    raise _fail(line_no, "a session after the manifest")
                pending = pending or BatchCheck()
                try:
                    pending.add(line, meta)
                except ArchiveError as exc:
                    raise _fail(line_no, exc.message) from None
                digest.update(line)
            elif meta.get("kind") == "batch":
                batch = pending or BatchCheck()
                problem = batch.close(meta)
                if problem:
                    raise _fail(line_no, f"batch {meta.get('batch')}: {problem}")
                pending = None
                summary.batches += 1
                summary.sessions += len(batch.records)
                for key, n in record_counts(batch.records).items():
                    summary.rows[key] += n
                yield batch.records
            elif meta.get("kind") == "manifest":
                if pending is not None and pending.records:
                    raise _fail(line_no, "the manifest follows an unfinished batch")
                if meta.get("sha256") != digest.hexdigest() or meta.get("rows") != summary.rows:
                    raise _fail(line_no, "the manifest's totals or checksum do not match")
                summary.manifest = meta
            else:
                raise _fail(line_no, f"unknown line kind {meta.get('kind')!r}")


def _parse_meta(line: bytes, line_no: int) -> dict[str, Any]:
    try:
        data = _loads(line)
    except ArchiveError as exc:
        raise _fail(line_no, exc.message) from None
    if not isinstance(data, dict):
        raise _fail(line_no, "not a JSON object")
    return data


def verify_archive(path: Path) -> ArchiveSummary:
    """Read a whole archive, checking every batch and the manifest; the summary."""
    summary = ArchiveSummary(str(path))
    for _batch in iter_batches(path, summary):
        pass
    if not summary.header:
        raise ArchiveError(f"{path} is empty: not a flowcli archive")
    return summary
