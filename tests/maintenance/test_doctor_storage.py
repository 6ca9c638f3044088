"""The doctor's storage check: what it warns about, and the command it names."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from flowcli.doctor.storage import (
    FREE_BYTES_MIN,
    LOG_BYTES_WARN,
    LOG_ROWS_WARN,
    StorageFacts,
    storage_findings,
)
from tests.conftest import Cli
from tests.maintenance.builders import clone_session, finished_session


def test_a_large_log_table_names_the_prune_command() -> None:
    (finding,) = storage_findings(
        StorageFacts(log_rows=LOG_ROWS_WARN, log_bytes=2_400_000_000, old_ended_sessions=812)
    )
    assert finding.severity == "warning" and finding.object == "step_execution_logs"
    assert "about 1,000,000 rows (2.2 GB)" in finding.detail
    assert finding.fix is not None and finding.fix.risk == "manual"
    assert "`flowcli db prune --older-than 30d`" in finding.fix.description
    assert "the 812 ended session(s) older than 30 days" in finding.fix.description
    (by_bytes,) = storage_findings(StorageFacts(log_rows=10, log_bytes=LOG_BYTES_WARN))
    assert "old ended sessions" in by_bytes.fix.description  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("facts", "warned"),
    [
        (StorageFacts(free_bytes=FREE_BYTES_MIN, free_share=0.25), True),
        (StorageFacts(free_bytes=FREE_BYTES_MIN - 1, free_share=0.9), False),  # small: no fuss
        (StorageFacts(free_bytes=10 * FREE_BYTES_MIN, free_share=0.1), False),
        (StorageFacts(log_rows=LOG_ROWS_WARN - 1, log_bytes=LOG_BYTES_WARN - 1), False),
    ],
)
def test_thresholds(facts: StorageFacts, warned: bool) -> None:
    assert bool(storage_findings(facts)) is warned


@pytest.mark.sqlite_only
def test_the_check_estimates_the_log_table_when_it_may_be_large(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Path(cli.db)
    clone_session(db, finished_session(db, loops=3), 40, status="finished")
    data = json.loads(cli.ok("db", "doctor", "--json").stdout)
    (storage,) = [c for c in data["checks"] if c["check"] == "storage"]
    assert storage["status"] == "ok" and storage["summary"].startswith("about 369 log rows")
    # Thresholds lowered: the same database is now "large", and the finding names the
    # prune that would help (41 ended sessions, none older than 30 days yet).
    monkeypatch.setattr("flowcli.doctor.storage.LOG_ROWS_WARN", 100)
    con = sqlite3.connect(db)
    con.execute("UPDATE sessions SET ended_at = '2020-01-01 00:00:00' WHERE id <= 10")
    con.commit()
    con.close()
    data = json.loads(cli("db", "doctor", "--json").stdout)
    (finding,) = [f for f in data["findings"] if f["check"] == "storage"]
    assert "about 369 rows" in finding["detail"]
    assert "the 10 ended session(s) older than 30 days" in finding["fix"]["description"]
