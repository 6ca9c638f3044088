"""A doctor killed during its backup leaves no backup that looks verified (issue 14).

The doctor used to write its backup straight under its final name: 5 of 20 kills left a
0-byte ``.doctor-*.bak``, which passes ``integrity_check`` and so looks like a verified
backup. Now the copy is written as ``.partial`` and renamed only once verified. Each trial
kills ``db doctor --fix --yes`` with SIGKILL at a moment chosen at random among the
backup's stages, waiting for that stage to be visible on disk (no fixed sleeps), then
checks that every ``.bak`` present is a complete, verified copy and that the database
itself is whole and still repairable.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.reliability.kill import flowcli
from tests.waiting import wait_until

TRIALS = 16
STAGES = ("start-up", "copy-begun", "copy-half-done", "backup-renamed")
DEADLINE = 120.0  # seconds to wait for a stage: generous, for a busy machine


def _database_needing_repair(path: Path) -> set[str]:
    """A flowcli database of about 30 MB with a dropped table: the doctor backs it up."""
    result = flowcli(path, "role", "add", "A", "--prompt", "You are A.")
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(path)
    try:
        prompt = "p" * 10_000
        conn.executemany(
            "INSERT INTO roles (name, prompt, created_at, updated_at) "
            "VALUES (?, ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            [(f"role {n}", prompt) for n in range(3_000)],
        )
        conn.execute("DROP TABLE messages")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _stage_reached(stage: str, folder: Path, size: int) -> bool:
    partials = list(folder.glob("*.doctor-*.partial"))
    if stage == "copy-begun":
        return bool(partials)
    if stage == "copy-half-done":
        return any(p.exists() and p.stat().st_size >= size // 2 for p in partials)
    if stage == "backup-renamed":
        return bool(list(folder.glob("*.doctor-*.bak")))
    return True  # start-up: kill at once


def _kill_at(stage: str, db: Path, size: int) -> bool:
    """Run the doctor, SIGKILL it once ``stage`` is visible; True if it was still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcli", "--db", str(db), "db", "doctor", "--fix", "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=subprocess_env(),
    )
    wait_until(
        lambda: _stage_reached(stage, db.parent, size),
        f"the doctor to reach {stage}",
        proc=proc,
        deadline_s=DEADLINE,
        stop_if_exited=True,
    )
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=DEADLINE)
    return running


def _assert_verified(backup: Path, tables: set[str]) -> None:
    conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        assert [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"], backup
        found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables <= found, (backup.name, tables - found)
    finally:
        conn.close()


@pytest.mark.slow
def test_a_doctor_killed_during_its_backup_leaves_no_backup_that_looks_verified(
    tmp_path: Path,
) -> None:
    pristine = tmp_path / "pristine.db"
    tables = _database_needing_repair(pristine)
    size = pristine.stat().st_size
    rng = random.Random(14)
    killed_mid_copy = 0
    for trial in range(TRIALS):
        folder = tmp_path / f"trial-{trial}"
        folder.mkdir()
        db = folder / "doctor.db"
        db.write_bytes(pristine.read_bytes())
        stage = STAGES[trial % len(STAGES)] if trial < len(STAGES) else rng.choice(STAGES)
        was_running = _kill_at(stage, db, size)
        partials = list(folder.glob("*.partial"))
        if was_running and partials and not list(folder.glob("*.bak")):
            killed_mid_copy += 1
        for backup in folder.glob("*.doctor-*.bak"):
            _assert_verified(backup, tables)
        conn = sqlite3.connect(db)
        try:
            assert [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"]
        finally:
            conn.close()
        if trial % 4 == 0:  # and the next doctor still repairs it
            assert flowcli(db, "db", "doctor", "--fix", "--yes").exit_code == 0
    assert killed_mid_copy >= 2, "no kill landed while the backup was being written"
