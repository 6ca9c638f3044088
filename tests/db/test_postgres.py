"""PostgreSQL specifics: migrations, compare_metadata and the doctor on a real server.

The engine, flows, sessions and logs tests run on PostgreSQL too (their modules set
BACKENDS); this module covers what only the database layer and the doctor do
differently there: no SQLite pragmas, pg_dump backups and an advisory lock.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from flowcli.db import migrate
from flowcli.db.connection import Database, resolve_target
from flowcli.db.revisions import HEAD_REVISION
from flowcli.db.tables import METADATA, include_owned_name
from tests.conftest import Cli
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import logs, new_session


def test_upgrade_downgrade_upgrade_and_models_match(pg_url: str) -> None:
    db = Database(resolve_target(pg_url))
    try:
        migrate.upgrade(db)
        assert migrate.current_revision(db) == HEAD_REVISION
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": include_owned_name}
            )
            assert compare_metadata(ctx, METADATA) == []
        migrate.downgrade(db, "base")
        assert migrate.current_revision(db) is None
        migrate.upgrade(db)
        assert migrate.current_revision(db) == HEAD_REVISION
    finally:
        db.dispose()


def test_doctor_on_postgres_finds_and_repairs_a_dropped_table(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # pg_dump writes its backup here
    cli = Cli(CliRunner(), pg_url)
    sid = new_session(cli, LOOP_FLOW)
    cli.sql("DROP TABLE step_execution_logs")
    result = cli("db", "doctor", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    names = [c["check"] for c in data["checks"]]
    assert "journal_mode" not in names and "file_access" not in names  # no SQLite pragmas
    missing = [f for f in data["findings"] if f["check"] == "missing_table"]
    assert [f["object"] for f in missing] == ["step_execution_logs"]
    if shutil.which("pg_dump") is None:
        refused = cli("db", "doctor", "--fix", "--yes")
        assert refused.exit_code == 1 and "--no-backup" in refused.stderr
        fixed = cli("db", "doctor", "--fix", "--yes", "--no-backup", "--json")
    else:
        fixed = cli("db", "doctor", "--fix", "--yes", "--json")
    assert fixed.exit_code == 0, fixed.stdout + fixed.stderr
    report = json.loads(fixed.stdout)
    if report["backup"]:
        backup = Path(report["backup"])
        assert backup.is_file() and "CREATE TABLE" in backup.read_text()
    cli.ok("auto", str(sid), "--quiet")
    assert len(logs(cli.db, sid)) == 9


def test_doctor_finds_stuck_session_on_postgres(pg_url: str) -> None:
    cli = Cli(CliRunner(), pg_url)
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    cli.sql(
        "INSERT INTO step_execution_logs (session_id, step_id, execution_order, status) "
        "SELECT id, current_step_id, 2, 'running' FROM sessions WHERE id = :id",
        id=sid,
    )
    cli.sql(
        "UPDATE sessions SET lease_owner = 'gone', lease_expires_at = '2000-01-01' WHERE id = :id",
        id=sid,
    )
    data = json.loads(cli("db", "doctor", "--json").stdout)
    assert [f["object"] for f in data["findings"] if f["check"] == "stuck_sessions"] == [
        f"session {sid}"
    ]
    result = cli("db", "doctor", "--fix-sessions", "--yes", "--no-backup", "--json")
    assert result.exit_code == 0
    rows = logs(cli.db, sid)
    assert rows[1]["status"] == "failed" and "interrupted" in rows[1]["error_message"]
