"""The models and the migrations agree, and migrations go up and down without loss."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from flowcli.db import migrate
from flowcli.db.connection import Database, resolve_target
from flowcli.db.revisions import HEAD_REVISION, KNOWN_REVISIONS, VERSION_TABLE
from flowcli.db.tables import METADATA, STEP_LOG_COLUMNS, include_owned_name, step_logs_table

SEED_INSERT = (
    "INSERT INTO step_execution_logs (session_id, step_id, parent_log_id, execution_order, "
    "round_index, loop_iteration, attempt_count, status, result_type, result_data, "
    "condition_evaluation, loop_check_result, error_message, duration_ms, memory_usage_mb, "
    "created_at, started_at, completed_at, step_snapshot, context_snapshot) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SEED_PARAMS = (
    51,
    21,
    None,
    1,
    1,
    0,
    1,
    "completed",
    "success",
    None,
    None,
    None,
    None,
    None,
    None,
    "2025-12-11 10:03:16.210626",
    None,
    None,
    None,
    None,
)


def _db(path: Path) -> Database:
    return Database(resolve_target(str(path)))


def test_head_constant_matches_alembic() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_current_head() == HEAD_REVISION
    revs = [r.revision for r in script.walk_revisions()]
    assert tuple(reversed(revs)) == KNOWN_REVISIONS


def test_models_match_head(tmp_path: Path) -> None:
    db = _db(tmp_path / "m.db")
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": include_owned_name}
        )
        diff = compare_metadata(ctx, METADATA)
    assert diff == []


def test_step_log_table_has_exactly_the_bug_report_columns() -> None:
    cols = [c.name for c in step_logs_table.columns]
    assert cols == ["id", *STEP_LOG_COLUMNS]
    assert len(STEP_LOG_COLUMNS) == 20


def test_bug_report_insert_runs_against_new_table(tmp_path: Path) -> None:
    path = tmp_path / "seed.db"
    migrate.upgrade(_db(path))
    con = sqlite3.connect(path)
    # The report's row names session 51 / step 21, which a new database lacks; the
    # statement itself (columns, order, types) is what must fit.
    con.execute("PRAGMA foreign_keys = OFF")
    con.execute(SEED_INSERT, SEED_PARAMS)
    con.commit()
    assert con.execute("SELECT count(*) FROM step_execution_logs").fetchone() == (1,)


def test_upgrade_downgrade_upgrade_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rt.db"
    db = _db(path)
    migrate.upgrade(db)
    assert migrate.current_revision(db) == HEAD_REVISION
    migrate.downgrade(db, "base")
    con = sqlite3.connect(path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables & set(METADATA.tables) == set()
    assert migrate.current_revision(db) is None
    migrate.upgrade(db)
    assert migrate.current_revision(db) == HEAD_REVISION


def test_downgrade_one_step_keeps_rows(tmp_path: Path) -> None:
    """0002 -> 0001 rebuilds `sessions`; the children must not be cascade-deleted."""
    path = tmp_path / "keep.db"
    db = _db(path)
    migrate.upgrade(db)
    con = sqlite3.connect(path)
    con.executescript(
        """
        INSERT INTO roles (id, name, prompt) VALUES (1, 'A', 'p');
        INSERT INTO flow_templates (id, name, type) VALUES (1, 'f', 'other');
        INSERT INTO flow_steps (id, flow_template_id, "order", speaker_role_ref, task_type,
                                context_scope) VALUES (1, 1, 1, 'A', 'comment', 'none');
        INSERT INTO sessions (id, topic, flow_template_id, status) VALUES (1, 't', 1, 'running');
        INSERT INTO session_roles (id, session_id, role_ref, role_id) VALUES (1, 1, 'A', 1);
        INSERT INTO messages (id, session_id, speaker_session_role_id, content)
            VALUES (1, 1, 1, 'hi');
        INSERT INTO step_execution_logs (session_id, step_id, execution_order) VALUES (1, 1, 1);
        """
    )
    con.commit()
    con.close()
    migrate.downgrade(db, "0001")
    migrate.upgrade(db)
    con = sqlite3.connect(path)
    counts = [
        con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("sessions", "messages", "step_execution_logs", "session_roles")
    ]
    assert counts == [1, 1, 1, 1]


def test_version_table_is_flowcli_own(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    con.execute("INSERT INTO alembic_version VALUES ('hostrev')")
    con.commit()
    con.close()
    migrate.upgrade(_db(path))
    con = sqlite3.connect(path)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("hostrev",)]
    assert con.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(HEAD_REVISION,)]


@pytest.mark.parametrize(
    ("pragma", "expected"),
    [("foreign_keys", 1), ("journal_mode", "wal"), ("busy_timeout", 7000)],
)
def test_every_sqlite_connection_sets_pragmas(
    tmp_path: Path, pragma: str, expected: object
) -> None:
    db = Database(resolve_target(str(tmp_path / "p.db")), busy_timeout=7.0)
    with db.read() as conn:
        value = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
    assert value == expected


def test_migrations_found_outside_source_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (migrate.migrations_dir() / "env.py").is_file()
    assert migrate.head_revision() == HEAD_REVISION
