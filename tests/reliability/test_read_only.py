"""A read-only database file or folder: reads work, writes fail with one clear line.

Runs flowcli without the capabilities that let root ignore file modes (the
``unprivileged`` prefix). The WAL cases are what a read-only folder really holds:

- ``wal-clean``: a WAL database closed cleanly (no -wal, no -shm). SQLite cannot create
  the -shm it needs in the folder, so flowcli opens the file read-only and immutable:
  reads work, writes are refused as read-only.
- ``wal-crash``: a writer was killed, -wal and -shm are there: reads work and see what
  that writer committed.
- ``wal-no-shm``: committed changes in -wal but no -shm: they cannot be read, so every
  command refuses with one line saying why (the doctor still examines a copy).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, Unprivileged
from tests.reliability.kill import (
    CLI_ENV,
    create_session,
    flowcli,
    import_flow,
    loop_flow,
    subprocess_env,
)

READS = [
    ["logs", "1"],
    ["session", "show", "1"],
    ["session", "list"],
    ["db", "doctor"],
]
WRITES = [
    ["run-next", "2"],
    ["session", "create", "--flow", "1"],
    ["flow", "import", "{flow}"],
]

WRITE_IN_WAL_AND_DIE = """
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode = WAL")
con.execute("PRAGMA wal_autocheckpoint = 0")
con.execute("UPDATE sessions SET topic = 'committed before the crash' WHERE id = 1")
os.kill(os.getpid(), signal.SIGKILL)
"""


def _build(folder: Path) -> Path:
    folder.mkdir()
    db = folder / "ro.db"
    sid = create_session(db, import_flow(db, loop_flow(1)))
    assert flowcli(db, "auto", str(sid), "--quiet").exit_code == 0
    create_session(db, 1)  # session 2, not started
    for leftover in folder.glob("flow-*.yaml"):
        leftover.unlink()
    return db


def _journal(db: Path, mode: str) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert con.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0] == mode
    con.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _crash_in_wal(db: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", WRITE_IN_WAL_AND_DIE, str(db)], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{db}-wal").stat().st_size > 0


def _prepare(kind: str, tmp_path: Path) -> tuple[Path, list[Path]]:
    """Build the case; returns the database and the paths to make read-only (in order)."""
    db = _build(tmp_path / "data")
    if kind == "file-444":
        _journal(db, "delete")
        return db, [db]
    if kind == "folder-555":
        _journal(db, "delete")
        return db, [db.parent]
    if kind == "file-444-wal":
        _journal(db, "wal")
        return db, [db]
    if kind == "wal-clean":
        _journal(db, "wal")
        return db, [db.parent]
    _journal(db, "wal")
    _crash_in_wal(db)
    if kind == "wal-no-shm":
        Path(f"{db}-shm").unlink()
    return db, [db.parent]


def _snapshot(folder: Path) -> dict[str, str]:
    """The folder's files and their hashes; the -shm index only by name (readers write it)."""
    return {
        p.name: "" if p.name.endswith("-shm") else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _run_unprivileged(tmp_path: Path, commands: list[list[str]]) -> list[dict[str, Any]]:
    env = subprocess_env()
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        [
            *Unprivileged(tmp_path).prefix(),
            sys.executable,
            "-m",
            "tests.reliability.batch",
            json.dumps(commands),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _one_error_line(result: dict[str, Any]) -> str:
    assert result["exception"] is None, result
    assert "Traceback" not in result["stdout"] + result["stderr"]
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result["stderr"]
    return lines[0]


@pytest.fixture
def read_only(tmp_path: Path):
    """Make paths read-only for the test, and writable again afterwards."""
    made: list[tuple[Path, int]] = []

    def make(paths: list[Path]) -> None:
        for path in paths:
            made.append((path, path.stat().st_mode))
            path.chmod(0o555 if path.is_dir() else 0o444)

    yield make
    for path, mode in reversed(made):
        path.chmod(mode)


@pytest.mark.parametrize("kind", ["file-444", "folder-555", "file-444-wal", "wal-clean"])
def test_reads_work_writes_fail_with_one_clear_line(
    tmp_path: Path, read_only: Any, kind: str
) -> None:
    db, paths = _prepare(kind, tmp_path)
    flow = tmp_path / "another.yaml"
    flow.write_text(loop_flow(3, "another"), encoding="utf-8")
    read_only(paths)
    before = _snapshot(db.parent)
    commands = [["--db", str(db), *c] for c in READS] + [
        ["--db", str(db), *[a.format(flow=flow) for a in c]] for c in WRITES
    ]
    results = _run_unprivileged(tmp_path, commands)
    for result in results[: len(READS)]:
        assert result["exit_code"] == 0, result
        assert result["exception"] is None
    assert "read-only" in results[READS.index(["db", "doctor"])]["stdout"]
    for result in results[len(READS) :]:
        line = _one_error_line(result)
        assert result["exit_code"] == 1
        assert "read-only" in line and "cannot write" in line, line
    # Nothing was written: the database is byte for byte what it was.
    after = _snapshot(db.parent)
    assert after[db.name] == before[db.name]
    if db.parent in paths:
        assert after == before


def test_read_only_folder_in_a_real_process(tmp_path: Path, read_only: Any) -> None:
    # The same promise through `python -m flowcli`: exit code 1 and one line on stderr.
    db, paths = _prepare("folder-555", tmp_path)
    read_only(paths)
    unprivileged = Unprivileged(tmp_path)
    shown = unprivileged.run("--db", str(db), "session", "show", "1")
    assert shown.returncode == 0, shown.stderr
    refused = unprivileged.run("--db", str(db), "run-next", "2")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: ") and refused.stderr.count("\n") == 1
    assert "read-only" in refused.stderr and "Traceback" not in refused.stderr


def test_wal_left_by_a_crash_in_a_read_only_folder_is_read(tmp_path: Path, read_only: Any) -> None:
    db, paths = _prepare("wal-crash", tmp_path)
    read_only(paths)
    before = _snapshot(db.parent)
    (doctor,) = _run_unprivileged(tmp_path, [["--db", str(db), "db", "doctor", "--json"]])
    assert doctor["exit_code"] == 0, doctor
    checks = json.loads(doctor["stdout"])["checks"]
    journal = next(c for c in checks if c["check"] == "journal_mode")
    assert "WAL file present" in journal["summary"]
    assert _snapshot(db.parent) == before  # the doctor examines without writing
    (shown,) = _run_unprivileged(tmp_path, [["--db", str(db), "session", "show", "1", "--json"]])
    assert shown["exit_code"] == 0, shown
    assert json.loads(shown["stdout"])["topic"] == "committed before the crash"
    # The folder is read-only but the file, its -wal and -shm are not: SQLite writes into
    # files that exist, so the session still runs (a read-only folder alone is no refusal).
    (ran,) = _run_unprivileged(tmp_path, [["--db", str(db), "run-next", "2"]])
    assert ran["exit_code"] == 0, ran


def test_wal_without_its_shm_in_a_read_only_folder_says_why(tmp_path: Path, read_only: Any) -> None:
    db, paths = _prepare("wal-no-shm", tmp_path)
    read_only(paths)
    before = _snapshot(db.parent)
    commands = [["--db", str(db), *c] for c in READS if c != ["db", "doctor"]]
    commands.append(["--db", str(db), "run-next", "2"])
    commands.append(["--db", str(db), "db", "doctor", "--json"])
    *refused, doctor = _run_unprivileged(tmp_path, commands)
    for result in refused:
        line = _one_error_line(result)
        assert result["exit_code"] == 1
        assert "-shm is missing" in line and "read-only" in line and "WAL" in line, line
    # The doctor examines a private copy of the file and its WAL, and sees the change.
    assert doctor["exit_code"] == 0, doctor
    assert json.loads(doctor["stdout"])["examinable"] is True
    assert _snapshot(db.parent) == before


def test_doctor_examines_a_clean_wal_database_in_a_read_only_folder(
    tmp_path: Path, read_only: Any
) -> None:
    db, paths = _prepare("wal-clean", tmp_path)
    read_only(paths)
    (doctor,) = _run_unprivileged(tmp_path, [["--db", str(db), "db", "doctor", "--json"]])
    assert doctor["exit_code"] == 0, doctor["stdout"][-400:]


def test_unprivileged_prefix_really_drops_root_powers(tmp_path: Path, read_only: Any) -> None:
    # Guard for the tests above: without it they would pass vacuously as root.
    target = tmp_path / "guard.txt"
    target.write_text("x")
    read_only([target])
    proc = subprocess.run(
        [*Unprivileged(tmp_path).prefix(), sys.executable, "-c", f"open({str(target)!r}, 'a')"],
        capture_output=True,
        text=True,
        env={**os.environ, **CLI_ENV},
    )
    assert proc.returncode != 0 and "PermissionError" in proc.stderr
