"""Another process holds the write lock: longer than --busy-timeout is one clear error and
nothing written; shorter, and the command waits and succeeds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.llm_server import Behaviour, FakeLLM
from tests.reliability.kill import (
    create_session,
    flowcli,
    import_flow,
    loop_flow,
    read_logs,
    spawn,
)
from tests.waiting import wait_until

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


def test_auto_json_that_fails_after_k_steps_prints_their_summary(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """`auto --json` always prints its summary: a run that commits k steps and then fails
    (here the write lock is held past --busy-timeout while step k+1 waits on the LLM)
    prints the k steps on stdout, and the one Error line on stderr, exit 1."""
    db = tmp_path / "partial.db"
    sid = create_session(db, import_flow(db, loop_flow(3)))
    k = 3
    gate = threading.Event()
    fake_llm.then(*[Behaviour() for _ in range(k)])
    fake_llm.default = Behaviour(gate=gate)
    llm = ["--responder", "openai", "--llm-base-url", fake_llm.base_url, "--llm-model", "m"]
    proc = spawn(db, "auto", str(sid), "--json", *llm, busy_timeout=0.5, stdout=subprocess.PIPE)
    holder = None
    try:
        # Step k+1 is claimed and asked once k steps are committed.
        wait_until(lambda: len(fake_llm.requests) >= k + 1, "step k+1's LLM call", proc=proc)
        holder = _hold_write_lock(db, 600)
    finally:
        gate.set()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if holder is not None:
            holder.kill()
            holder.communicate()
    assert proc.returncode == 1
    assert err.startswith("Error: ") and err.count("\n") == 1 and "locked" in err, err
    summary = json.loads(out)
    assert summary["steps_run"] == k
    assert summary["stop_reason"] == "error" and "locked" in summary["error"]
    assert summary["session_id"] == sid
    completed = [r for r in read_logs(db, sid) if r["status"] == "completed"]
    assert len(completed) == k
