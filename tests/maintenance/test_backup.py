"""`db backup` while sessions run, `db restore` (refused while a process holds the
database; the current file kept first), `db vacuum` and `db size`."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli, subprocess_env
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import import_flow
from tests.maintenance.builders import clone_session, finished_session
from tests.reliability.kill import (
    completed_count,
    consistency_problems,
    create_session,
    loop_flow,
    spawn,
)
from tests.reliability.kill import import_flow as import_flow_file
from tests.waiting import wait_until

BACKENDS = ("sqlite", "postgres")
DEADLINE_S = 120.0


def _integrity(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


@pytest.mark.sqlite_only
def test_backup_while_auto_runs_is_consistent_and_auto_keeps_going(
    cli: Cli, tmp_path: Path
) -> None:
    db = Path(cli.db)
    loops = 400
    sid = create_session(db, import_flow_file(db, loop_flow(loops)))
    proc = spawn(db, "auto", str(sid), "--quiet")
    try:
        wait_until(lambda: completed_count(db, sid) >= 5, "auto's first steps")
        dest = tmp_path / "copy.db"
        result = cli.ok("db", "backup", str(dest), "--json")
        during = completed_count(db, sid)
        wait_until(lambda: completed_count(db, sid) > during, "auto to go on after the backup")
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert result.stdout.count("\n") > 0 and '"verified": "integrity_check: ok"' in result.stdout
    assert _integrity(dest) == ["ok"]
    # The copy is one consistent moment of a running session: whole steps only.
    assert consistency_problems(dest, sid, loops, claim_allowed=True) == []
    assert completed_count(dest, sid) >= 5
    shown = subprocess.run(
        [sys.executable, "-m", "flowcli", "--db", str(dest), "session", "show", str(sid)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr


def test_backup_refuses_to_overwrite_and_needs_a_folder(cli: Cli, tmp_path: Path) -> None:
    if cli.backend == "postgres" and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not on PATH")
    cli.ok("db", "upgrade")
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"mine")
    result = cli("db", "backup", str(taken))
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert taken.read_bytes() == b"mine"
    result = cli("db", "backup", str(tmp_path / "no" / "such" / "b.db"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.postgres
def test_backup_on_postgres_is_a_pg_dump_read_back_whole(
    pg_url: str, runner, tmp_path: Path
) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore are not on PATH")
    cli = Cli(runner, pg_url)
    sid = int(cli.json("session", "create", "--flow", str(import_flow(cli, LOOP_FLOW)))["id"])
    cli.ok("auto", str(sid), "--quiet")
    dest = tmp_path / "pg.dump"
    data = cli.json("db", "backup", str(dest))
    assert data["method"] == "pg_dump (custom format)" and data["bytes"] == dest.stat().st_size
    listing = subprocess.run(
        ["pg_restore", "--list", str(dest)], capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0
    # Only the database's own schema (the URL's search_path), with flowcli's tables.
    assert "TABLE DATA" in listing.stdout and "step_execution_logs" in listing.stdout
    assert "flowcli_alembic_version" in listing.stdout


@pytest.mark.postgres
def test_restore_on_postgres_keeps_a_dump_first_and_brings_the_backup_back(
    pg_url: str, runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore are not on PATH")
    monkeypatch.chdir(tmp_path)  # where the kept dump of the current contents goes
    cli = Cli(runner, pg_url)
    flow = import_flow(cli, LOOP_FLOW)
    first = int(cli.json("session", "create", "--flow", str(flow))["id"])
    cli.ok("auto", str(first), "--quiet")
    dest = tmp_path / "pg.dump"
    cli.json("db", "backup", str(dest))
    before = cli.json("logs", str(first))
    # After the backup: one more session, and the first one's rows changed.
    second = int(cli.json("session", "create", "--flow", str(flow))["id"])
    cli.sql("DELETE FROM messages WHERE session_id = :s", s=first)
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_text("hello")
    refused = cli("db", "restore", str(not_a_dump), "--yes")
    assert refused.exit_code == 2 and "not a pg_dump archive" in refused.stderr
    assert len(cli.json("session", "list")) == 2  # nothing changed
    data = cli.json("db", "restore", str(dest), "--yes")
    kept = Path(data["previous_kept_as"])
    assert kept.is_file() and kept.parent == tmp_path
    assert subprocess.run(["pg_restore", "--list", str(kept)], capture_output=True).returncode == 0
    assert [s["id"] for s in cli.json("session", "list")] == [first]
    assert cli.json("logs", str(first)) == before
    assert len(cli.json("session", "transcript", str(first))) > 0
    assert second not in [s["id"] for s in cli.json("session", "list")]


class Holder:
    """Another process with the database open (as a running `auto` or an MRC server)."""

    def __init__(self, db: Path) -> None:
        code = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('SELECT count(*) FROM sqlite_master').fetchone(); "
            "print('ready', flush=True); sys.stdin.read()"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.proc.communicate(input="", timeout=60)


@pytest.mark.sqlite_only
def test_restore_refuses_while_held_then_keeps_the_current_file_first(
    cli: Cli, tmp_path: Path
) -> None:
    flow = import_flow(cli, LOOP_FLOW)
    first = int(cli.json("session", "create", "--flow", str(flow))["id"])
    cli.ok("auto", str(first), "--quiet")
    backup = tmp_path / "b.db"
    cli.ok("db", "backup", str(backup))
    later = int(cli.json("session", "create", "--flow", str(flow))["id"])
    cli.ok("auto", str(later), "--quiet")
    holder = Holder(Path(cli.db))
    try:
        result = cli("db", "restore", str(backup), "--yes")
        assert result.exit_code == 1
        assert f"is open in process {holder.proc.pid}" in result.stderr
        assert "nothing was changed" in result.stderr
        assert cli.sql("SELECT count(*) AS n FROM sessions")[0]["n"] == 2
        assert not list(tmp_path.glob("*.bak"))
    finally:
        holder.stop()
    data = cli.json("db", "restore", str(backup), "--yes")
    kept = Path(data["previous_kept_as"])
    assert kept.is_file() and _integrity(kept) == ["ok"]
    assert data["verified"] == "integrity_check: ok"
    assert [r["id"] for r in cli.sql("SELECT id FROM sessions")] == [first]
    con = sqlite3.connect(kept)
    assert [r[0] for r in con.execute("SELECT id FROM sessions ORDER BY id")] == [first, later]
    con.close()
    assert cli.json("logs", "stats", str(first))["total"]["runs"] == 9
    assert str(cli.sql("PRAGMA journal_mode")[0]["journal_mode"]).lower() == "wal"


@pytest.mark.sqlite_only
def test_restore_needs_yes_off_a_terminal_and_a_sound_backup(cli: Cli, tmp_path: Path) -> None:
    cli.ok("db", "upgrade")
    backup = tmp_path / "b.db"
    cli.ok("db", "backup", str(backup))
    result = cli("db", "restore", str(backup))
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = cli("db", "restore", str(text), "--yes")
    assert result.exit_code == 1 and "is not a SQLite database" in result.stderr
    damaged = tmp_path / "damaged.db"
    raw = bytearray(backup.read_bytes())
    raw[4096 : 4096 + 8] = b"\xff" * 8  # page 2's b-tree header
    damaged.write_bytes(bytes(raw))
    result = cli("db", "restore", str(damaged), "--yes")
    assert result.exit_code != 0 and result.stderr.startswith("Error: ")
    assert "nothing was changed" in result.stderr
    assert not list(tmp_path.glob("*.bak"))
    result = cli("db", "restore", str(tmp_path / "missing.db"), "--yes")
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.sqlite_only
def test_prune_then_vacuum_gives_the_space_back_and_size_reports_it(cli: Cli) -> None:
    db = Path(cli.db)
    source = finished_session(db, loops=20)
    con = sqlite3.connect(db)
    con.execute("UPDATE messages SET content = content || :pad", {"pad": "x" * 20_000})
    con.commit()
    con.close()
    clone_session(db, source, 60, status="finished")
    size = cli.json("db", "size")
    by_table = {t["table"]: t for t in size["tables"]}
    assert by_table["sessions"]["rows"] == 61 and size["sessions"] == 61
    assert by_table["messages"]["rows"] == 61 * 43 and by_table["messages"]["bytes"] > 50_000_000
    assert size["steps"] == by_table["step_execution_logs"]["rows"] == 61 * 43
    assert size["bytes_per_session"] > 800_000 and size["bytes_per_step"] > 100
    assert size["free_share"] < 0.05
    cli.ok("db", "prune", "--older-than", "0s", "--yes", "--no-archive")
    after = cli.json("db", "size")
    assert after["sessions"] == 0 and after["free_share"] > 0.9
    doctor = cli.json("db", "doctor")
    storage = [f for f in doctor["findings"] if f["check"] == "storage"]
    assert [f["object"] for f in storage] == ["free pages"]
    assert "`flowcli db vacuum`" in storage[0]["fix"]["description"]
    before = db.stat().st_size
    data = cli.json("db", "vacuum")
    assert data["bytes_before"] >= before and data["bytes_after"] < before / 10
    assert data["freed_bytes"] > 40_000_000
    assert cli.json("db", "size")["free_bytes"] == 0
    doctor = cli.json("db", "doctor")
    assert [f for f in doctor["findings"] if f["check"] == "storage"] == []
    text = cli.ok("db", "size").stdout
    assert "step_execution_logs" in text and "per session" in text


def test_size_and_vacuum_on_every_backend(cli: Cli) -> None:
    flow = import_flow(cli, LOOP_FLOW)
    sid = int(cli.json("session", "create", "--flow", str(flow))["id"])
    cli.ok("auto", str(sid), "--quiet")
    size = cli.json("db", "size")
    by_table = {t["table"]: t for t in size["tables"]}
    assert by_table["step_execution_logs"]["rows"] == 9 and by_table["roles"]["rows"] == 3
    assert all(t["bytes"] and t["bytes"] > 0 for t in size["tables"])
    assert size["bytes"] >= sum(t["bytes"] for t in size["tables"]) - 1_000_000
    assert size["bytes_per_step"] > 0 and size["bytes_per_session"] > 0
    data = cli.json("db", "vacuum")
    assert data["bytes_after"] > 0 and "VACUUM" in data["detail"]


def test_a_plain_dump_cut_short_is_never_kept_as_the_safety_copy(tmp_path: Path) -> None:
    # The doctor's PostgreSQL safety copy is plain SQL; pg_dump writes its completion line
    # last, so a dump cut short (disk full, killed) lacks it and must not pass as a backup.
    from flowcli.errors import DatabaseError
    from flowcli.maintenance.safety_copy import _check_plain_dump

    partial = tmp_path / ".x.sql.partial"
    partial.write_text("--\n-- PostgreSQL database dump\n--\nCREATE TABLE t (id int);\n")
    with pytest.raises(DatabaseError, match="incomplete"):
        _check_plain_dump(partial, tmp_path / "x.sql")
    partial.write_text(partial.read_text() + "\n--\n-- PostgreSQL database dump complete\n--\n")
    _check_plain_dump(partial, tmp_path / "x.sql")  # complete: accepted
