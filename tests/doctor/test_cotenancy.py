"""Sharing MRC's database: the owner record, one schema whatever the adoption path, the
doctor's co-tenancy checks and repairs, and `db downgrade` that never drops MRC's data."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowcli.db.mrc_schema import MRC_STEP_LOG_DDL
from tests.conftest import MRC_FIXTURE, Cli, MakeCli, subprocess_env

MRC_TABLES = (
    "roles",
    "flow_templates",
    "flow_steps",
    "sessions",
    "session_roles",
    "messages",
    "step_execution_logs",
)


def schema(path: Path) -> set[tuple[str, str, str, str]]:
    """sqlite_master, normalised: whitespace collapsed, identifier quotes dropped."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        con.close()
    return {(t, n, tb, " ".join((sql or "").replace('"', "").split())) for t, n, tb, sql in rows}


def counts(path: Path, tables: tuple[str, ...] = MRC_TABLES) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def drop_step_log(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("DROP TABLE step_execution_logs")
    con.commit()
    con.close()


def doctor(cli: Cli, *args: str) -> tuple[int, dict]:
    result = cli("db", "doctor", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def meta(path: Path) -> dict[str, str]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT key, value FROM flowcli_meta"))
    finally:
        con.close()


def test_mrc_step_log_definition_is_the_fixture_s(mrc_copy: Path) -> None:
    con = sqlite3.connect(mrc_copy)
    stored = {
        name: sql
        for name, sql in con.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'step_execution_logs'"
        )
    }
    con.close()
    assert sorted(stored.values()) == sorted(MRC_STEP_LOG_DDL)
    assert len([n for n in stored if n.startswith("idx_step_logs_")]) == 11


def test_adopting_the_seed_state_and_an_intact_copy_leave_one_schema(
    tmp_path: Path, make_cli: MakeCli
) -> None:
    if not MRC_FIXTURE.is_file():
        pytest.skip(f"MRC fixture not found at {MRC_FIXTURE} (../shared is absent)")
    intact, seed = tmp_path / "intact" / "mrc.db", tmp_path / "seed" / "mrc.db"
    for path in (intact, seed):
        path.parent.mkdir()
        shutil.copyfile(MRC_FIXTURE, path)
    drop_step_log(seed)
    for path in (intact, seed):
        code, data = doctor(make_cli(path), "--fix", "--yes")
        assert code == 0, data
        # No stray -wal/-shm: MRC's file keeps its rollback journal.
        assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".bak")) == [
            "mrc.db"
        ]
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert schema(intact) == schema(seed)
    indexes = {n for t, n, tb, _ in schema(seed) if t == "index" and tb == "step_execution_logs"}
    assert len({n for n in indexes if n.startswith("idx_step_logs_")}) == 11
    assert "ux_step_logs_session_order" not in indexes
    assert meta(seed)["owner"] == meta(intact)["owner"] == "mrc"
    assert json.loads(meta(seed)["restored"]) == ["step_execution_logs"]
    assert json.loads(meta(intact)["restored"]) == []
    assert meta(seed)["adopted_at_revision"] == "0001"


def test_flowcli_commands_leave_mrc_journal_mode_alone(mrc_copy: Path, make_cli: MakeCli) -> None:
    cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    cli.ok("auto", "51", "--quiet")
    cli.ok("session", "list")
    assert sqlite3.connect(mrc_copy).execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert sorted(p.name for p in mrc_copy.parent.glob("mrc-copy.db-*")) == []


def test_owner_of_flowcli_own_database_is_recorded(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    assert meta(cli.db)["owner"] == "flowcli"
    code, data = doctor(cli)
    owner = next(c for c in data["checks"] if c["check"] == "owner")
    assert owner["summary"] == "flowcli (recorded)"


def test_host_alembic_table_does_not_make_flowcli_tables_mrc_s(tmp_path: Path) -> None:
    from flowcli.db import migrate
    from flowcli.db.connection import Database, resolve_target

    path = tmp_path / "host.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    con.commit()
    con.close()
    db = Database(resolve_target(str(path)))
    migrate.upgrade(db)
    assert db.owner == "flowcli" and meta(path)["owner"] == "flowcli"


def test_unadopted_mrc_database_is_judged_mrc_s(mrc_copy: Path, make_cli: MakeCli) -> None:
    code, data = doctor(make_cli(mrc_copy))
    owner = next(c for c in data["checks"] if c["check"] == "owner")
    assert owner["summary"].startswith("mrc (judged from its tables")
    finding = next(f for f in data["findings"] if f["check"] == "owner")
    assert "Not adopted yet" in finding["detail"]
    # MRC's own journal mode is information, not a problem to fix.
    journal = next(f for f in data["findings"] if f["check"] == "journal_mode")
    assert journal["severity"] == "info" and journal["fix"] is None


def test_doctor_reports_what_flowcli_added(mrc_copy: Path, make_cli: MakeCli) -> None:
    cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    code, data = doctor(cli)
    assert code == 0
    detail = next(f for f in data["findings"] if f["check"] == "owner")["detail"]
    for added in (
        "table flowcli_alembic_version",
        "table flowcli_meta",
        "column sessions.engine_state",
        "column flow_templates.responder",
        "index ix_sessions_status",
    ):
        assert added in detail
    assert "ux_step_logs_session_order" not in detail


def test_doctor_finds_and_repairs_what_stops_mrc(mrc_copy: Path, make_cli: MakeCli) -> None:
    """An older flowcli's state: a unique index, a number MRC would reuse, 'cancelled'."""
    cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    cli.ok("run-next", "51")
    cli.ok("run-next", "51")
    con = sqlite3.connect(mrc_copy)
    con.execute(
        "CREATE UNIQUE INDEX ux_step_logs_session_order "
        "ON step_execution_logs (session_id, execution_order)"
    )
    con.execute("UPDATE sessions SET executed_steps_count = 1 WHERE id = 51")
    con.execute("UPDATE sessions SET status = 'cancelled' WHERE id = 50")
    con.commit()
    con.close()
    code, data = doctor(cli)
    assert code == 1
    found = {(f["object"], f["severity"]) for f in data["findings"] if f["check"] == "cotenancy"}
    assert found == {
        ("ux_step_logs_session_order", "error"),
        ("session 51", "error"),
        ("session 50", "warning"),
    }
    numbering = next(f for f in data["findings"] if f["object"] == "session 51")
    assert "would collide" in numbering["detail"] and numbering["fix"]["applies_with"] == "sessions"
    code, data = doctor(cli, "--fix-sessions", "--yes")
    assert code == 0, data
    assert data["backup"] and Path(data["backup"]).is_file()
    assert [f for f in data["findings"] if f["check"] == "cotenancy"] == []
    con = sqlite3.connect(mrc_copy)
    assert con.execute("SELECT executed_steps_count FROM sessions WHERE id = 51").fetchone() == (2,)
    assert con.execute("SELECT status FROM sessions WHERE id = 50").fetchone() == ("terminated",)
    con.close()


def test_upgrade_drops_the_unique_index_an_older_adoption_made(
    mrc_copy: Path, make_cli: MakeCli
) -> None:
    cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    cli.ok("db", "downgrade", "0003", "--yes")
    con = sqlite3.connect(mrc_copy)
    con.execute(
        "CREATE UNIQUE INDEX ux_step_logs_session_order "
        "ON step_execution_logs (session_id, execution_order)"
    )
    con.commit()
    con.close()
    cli.ok("db", "upgrade")
    names = {n for _t, n, _tb, _s in schema(mrc_copy)}
    assert "ux_step_logs_session_order" not in names
    assert meta(mrc_copy)["owner"] == "mrc"


# --- db downgrade and stamp -------------------------------------------------------------


def test_downgrade_base_on_an_adopted_mrc_copy_keeps_every_mrc_table_and_row(
    mrc_copy: Path, make_cli: MakeCli, tmp_path: Path
) -> None:
    pristine = tmp_path / "pristine.db"
    shutil.copyfile(mrc_copy, pristine)
    cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    cli.ok("auto", "51", "--quiet")
    before = counts(mrc_copy)
    refused = cli("db", "downgrade", "base")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert "MRC's tables and rows stay" in refused.stderr
    assert counts(mrc_copy) == before
    backups = set(mrc_copy.parent.glob("*.bak"))
    done = cli.ok("db", "downgrade", "base", "--yes")
    assert "is at base" in done.stderr
    assert counts(mrc_copy) == before  # every MRC table and row, flowcli's run of 51 too
    # What is left is MRC's schema exactly as it was before adoption.
    assert schema(mrc_copy) == schema(pristine)
    (backup,) = set(mrc_copy.parent.glob("*.bak")) - backups
    assert counts(backup) == before


def test_downgrade_on_flowcli_own_database_needs_yes_and_backs_up(cli: Cli) -> None:
    from tests.helpers import ROLES, new_session

    sid = new_session(cli, ROLES + "name: f\nsteps:\n  - {speaker: A, task_type: comment}\n")
    cli.ok("auto", str(sid), "--quiet")
    refused = cli("db", "downgrade", "base")
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: ")
    assert "WITH EVERY ROW" in refused.stderr and "--yes" in refused.stderr
    assert counts(cli.db, ("sessions", "step_execution_logs")) == {
        "sessions": 1,
        "step_execution_logs": 1,
    }
    done = cli.ok("db", "downgrade", "base", "--yes")
    (backup,) = cli.db.parent.glob("*.bak")
    assert f"backup: {backup}" in done.stderr
    assert counts(backup, ("sessions", "step_execution_logs")) == {
        "sessions": 1,
        "step_execution_logs": 1,
    }
    con = sqlite3.connect(cli.db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert "sessions" not in tables


def test_stamp_over_an_existing_record_needs_yes(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    refused = cli("db", "stamp", "0002")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert cli.json("db", "current")["current"] != "0002"
    cli.ok("db", "stamp", "0002", "--yes")
    assert cli.json("db", "current")["current"] == "0002"
    assert list(cli.db.parent.glob("*.bak"))


def _read_until(fd: int, needle: bytes, deadline_s: float = 60.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + deadline_s
    while needle not in seen and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    return seen


@pytest.mark.parametrize(("answer", "downgraded"), [("n", False), ("y", True)])
def test_downgrade_asks_on_a_terminal(tmp_path: Path, answer: str, downgraded: bool) -> None:
    import pty

    db = tmp_path / "own.db"
    env = subprocess_env()
    cmd = [sys.executable, "-m", "flowcli", "--db", str(db)]
    subprocess.run([*cmd, "db", "upgrade"], env=env, check=True, capture_output=True)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*cmd, "db", "downgrade", "base"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    try:
        prompt = _read_until(leader, b"Go ahead")
        assert b"WITH EVERY ROW" in prompt, prompt
        os.write(leader, f"{answer}\n".encode())
        _read_until(leader, b"\x00", deadline_s=30)  # until the process closes the terminal
        assert proc.wait(timeout=60) == (0 if downgraded else 1)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert ("sessions" not in tables) is downgraded
    assert bool(list(tmp_path.glob("*.bak"))) is downgraded


def test_every_revision_says_what_its_downgrade_removes() -> None:
    from flowcli.db.revisions import KNOWN_REVISIONS
    from flowcli.doctor.destructive import _REMOVED_BY

    assert set(_REMOVED_BY) == set(KNOWN_REVISIONS)
