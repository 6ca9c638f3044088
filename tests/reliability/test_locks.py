"""Another process holds the write lock: longer than --busy-timeout is one clear error and
nothing written; shorter, and the command waits and succeeds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.kill import create_session, flowcli, import_flow, loop_flow

HOLD_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.rollback()
"""


def _hold_write_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _dump(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.fixture
def session_db(tmp_path: Path) -> tuple[Path, int]:
    db = tmp_path / "locks.db"
    sid = create_session(db, import_flow(db, loop_flow(2)))
    assert flowcli(db, "run-next", str(sid)).exit_code == 0
    (tmp_path / "flow.yaml").write_text(loop_flow(1, "another"), encoding="utf-8")
    return db, sid


WRITES = [
    ("run-next", "{sid}"),
    ("auto", "{sid}", "--quiet"),
    ("session", "create", "--flow", "1"),
    ("session", "pause", "{sid}"),
    ("flow", "import", "{dir}/flow.yaml"),
]


@pytest.mark.parametrize(
    "command", WRITES, ids=lambda c: "-".join(a for a in c[:2] if "{" not in a)
)
def test_lock_held_past_the_busy_timeout_is_one_clear_error(
    session_db: tuple[Path, int], command: tuple[str, ...]
) -> None:
    db, sid = session_db
    args = [a.format(sid=sid, dir=db.parent) for a in command]
    before = _dump(db)
    holder = _hold_write_lock(db, 30)
    try:
        started = time.monotonic()
        result = flowcli(db, "--busy-timeout", "0.5", *args)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "locked" in lines[0], lines
    assert "Traceback" not in result.output
    assert waited < 10  # gave up after the busy timeout, not after minutes
    assert _dump(db) == before  # nothing written


def test_lock_held_shorter_than_the_busy_timeout_waits_and_succeeds(
    session_db: tuple[Path, int],
) -> None:
    db, sid = session_db
    holder = _hold_write_lock(db, 0.5)
    try:
        # A busy timeout far past the half second the lock is held: on a loaded machine
        # the holder may be slow to wake and let go.
        result = flowcli(db, "--busy-timeout", "120", "run-next", str(sid))
    finally:
        holder.wait(timeout=30)
    assert result.exit_code == 0, result.stderr
    con = sqlite3.connect(db)
    count = con.execute("SELECT count(*) FROM step_execution_logs").fetchone()[0]
    con.close()
    assert count == 2


def test_reads_do_not_wait_for_a_writer(session_db: tuple[Path, int]) -> None:
    # WAL: a process holding the write lock does not stop `logs` or `session show`.
    db, sid = session_db
    holder = _hold_write_lock(db, 30)
    try:
        for args in (("logs", str(sid)), ("session", "show", str(sid)), ("session", "list")):
            result = flowcli(db, "--busy-timeout", "0.2", *args)
            assert result.exit_code == 0, result.stderr
    finally:
        holder.kill()
        holder.wait()
