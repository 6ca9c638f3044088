"""Damaged and foreign files: a clear error or a correct recovery, the doctor's report,
and the file byte for byte as it was unless ``db doctor --fix`` was asked to change it."""

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

from tests.reliability.kill import create_session, flowcli, import_flow, loop_flow

COMMANDS = [
    ("session", "list"),
    ("logs", "1"),
    ("run-next", "1"),
    ("session", "create", "--flow", "1"),
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(result: Any) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _doctor(db: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = flowcli(db, "db", "doctor", "--json", *args)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, json.loads(result.stdout)


def _flowcli_db(path: Path) -> Path:
    sid = create_session(path, import_flow(path, loop_flow(2)))
    assert flowcli(path, "auto", str(sid), "--quiet").exit_code == 0
    return path


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a healthy, checkpointed flowcli database with a finished session."""
    db = _flowcli_db(tmp_path_factory.mktemp("healthy") / "h.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return db.read_bytes()


def _garbage(path: Path, healthy: bytes) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _truncated(path: Path, healthy: bytes) -> None:
    # The header survives, the pages it promises do not.
    path.write_bytes(healthy[: len(healthy) * 2 // 5])


@pytest.mark.parametrize(
    ("make", "words", "doctor_words"),
    [
        (_garbage, "not a SQLite database", "not a SQLite database"),
        (_truncated, "malformed", "malformed"),
    ],
    ids=["garbage", "truncated"],
)
def test_damaged_file_is_refused_and_never_changed(
    tmp_path: Path, healthy: bytes, make: Any, words: str, doctor_words: str
) -> None:
    db = tmp_path / "bad.db"
    make(db, healthy)
    before = _sha(db)
    for command in COMMANDS:
        result = flowcli(db, *command)
        assert result.exit_code == 1
        assert words in _one_error_line(result)
    code, report = _doctor(db)
    assert code == 2 and report["ok"] is False and report["examinable"] is False
    assert doctor_words in json.dumps(report["unresolved"])
    # --fix cannot repair what it cannot examine, and does not try.
    code, _report = _doctor(db, "--fix", "--yes")
    assert code == 2
    assert _sha(db) == before
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    assert not list(tmp_path.glob("*.bak"))


def test_doctor_counts_a_malformed_file_as_an_error(tmp_path: Path, healthy: bytes) -> None:
    db = tmp_path / "bad.db"
    _truncated(db, healthy)
    _code, report = _doctor(db)
    assert report["summary"]["errors"] >= 1


def test_zero_byte_file_is_new_not_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    code, report = _doctor(db)
    assert code == 0 and report["examinable"] is True
    access = next(f for f in report["findings"] if f["check"] == "file_access")
    assert "empty" in access["detail"] and "not corrupt" in access["detail"]
    assert db.stat().st_size == 0  # examining it wrote nothing
    # A command that reads says how to create it, and writes nothing (issue 14) ...
    result = flowcli(db, "session", "list", "--json")
    assert result.exit_code == 1 and "flowcli db upgrade" in result.stderr
    assert db.stat().st_size == 0
    # ... a command that adds something creates the schema in it.
    result = flowcli(db, "role", "add", "A", "--prompt", "You are A.")
    assert result.exit_code == 0, result.stderr
    assert json.loads(flowcli(db, "session", "list", "--json").stdout) == []
    code, report = _doctor(db)
    assert code == 0 and report["revision"]["state"] == "head"


FOREIGN = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id));
INSERT INTO customers (name) VALUES ('Ada'), ('Grace');
INSERT INTO orders (customer_id) VALUES (1), (2), (2);
"""


def _foreign_rows(db: Path) -> list[Any]:
    con = sqlite3.connect(db)
    try:
        return [
            con.execute("SELECT * FROM customers ORDER BY id").fetchall(),
            con.execute("SELECT * FROM orders ORDER BY id").fetchall(),
            con.execute(
                "SELECT name, sql FROM sqlite_master WHERE name IN ('customers', 'orders')"
            ).fetchall(),
        ]
    finally:
        con.close()


def test_another_applications_database_is_refused_until_adopted(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.executescript(FOREIGN)
    con.close()
    before, rows = _sha(db), _foreign_rows(db)
    for command in COMMANDS:
        result = flowcli(db, *command)
        assert result.exit_code == 1
        line = _one_error_line(result)
        assert "not managed by flowcli" in line and "flowcli db doctor --fix" in line
    code, report = _doctor(db)
    assert code == 1
    missing = {f["object"] for f in report["findings"] if f["check"] == "missing_table"}
    assert {"sessions", "step_execution_logs", "messages"} <= missing
    # The application's own tables are reported as information, never as problems.
    others = {f["object"]: f["severity"] for f in report["findings"] if "extra" in f["check"]}
    assert others == {"customers": "info", "orders": "info"}
    # Refused commands and the doctor's examination left the file exactly as it was
    # (not even switched to WAL).
    assert _sha(db) == before
    # --fix adopts it: flowcli's tables are added, the application's are untouched.
    code, report = _doctor(db, "--fix", "--yes")
    assert code == 0, report["unresolved"]
    assert report["backup"] and Path(report["backup"]).is_file()
    assert _foreign_rows(db) == rows
    backup = sqlite3.connect(report["backup"])
    assert "sessions" not in {r[0] for r in backup.execute("SELECT name FROM sqlite_master")}
    backup.close()
    assert _foreign_rows(Path(report["backup"])) == rows
    flow = tmp_path / "flow.yaml"
    flow.write_text(loop_flow(1), encoding="utf-8")
    assert flowcli(db, "flow", "import", str(flow)).exit_code == 0
    assert flowcli(db, "session", "create", "--flow", "1").exit_code == 0
    assert flowcli(db, "auto", "1", "--quiet").exit_code == 0
    assert _foreign_rows(db) == rows


CRASH_AFTER_COMMIT = """
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode = WAL")
con.execute("PRAGMA wal_autocheckpoint = 0")
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE sessions SET topic = 'committed, then the writer died' WHERE id = 1")
con.execute("INSERT INTO roles (name, prompt) VALUES ('Survivor', 'I was committed.')")
con.execute("COMMIT")
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE sessions SET topic = 'never committed' WHERE id = 1")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_wal_left_by_a_crash_is_recovered(tmp_path: Path) -> None:
    db = _flowcli_db(tmp_path / "crash.db")
    proc = subprocess.run([sys.executable, "-c", CRASH_AFTER_COMMIT, str(db)], check=False)
    assert proc.returncode == -signal.SIGKILL
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 0
    before = (_sha(db), _sha(wal))
    # The doctor reports the leftover WAL, and examining it changes neither file.
    code, report = _doctor(db)
    assert code == 0, report["findings"]
    journal = next(c for c in report["checks"] if c["check"] == "journal_mode")
    assert "WAL file present" in journal["summary"]
    assert (_sha(db), _sha(wal)) == before
    # Commands see exactly what was committed, nothing of the transaction that died.
    shown = flowcli(db, "session", "show", "1", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["topic"] == "committed, then the writer died"
    roles = flowcli(db, "role", "list", "--json")
    assert "Survivor" in roles.stdout
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
