"""`flowcli db doctor` on a database built for each check and each repair path."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from flowcli.db.revisions import HEAD_REVISION
from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import logs, new_session, session_row, step_orders


def doctor(cli: Cli, *args: str) -> tuple[int, dict]:
    result = cli("db", "doctor", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def findings(data: dict, check: str) -> list[dict]:
    return [f for f in data["findings"] if f["check"] == check]


def table_counts(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    names = [
        r[0]
        for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    counts = {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    con.close()
    return counts


def test_healthy_database_exits_0(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    code, data = doctor(cli)
    assert code == 0 and data["ok"] is True
    assert data["revision"] == {"current": HEAD_REVISION, "head": HEAD_REVISION, "state": "head"}
    assert [f for f in data["findings"] if f["severity"] == "error"] == []
    text = cli.ok("db", "doctor").stdout
    assert "✓" in text and "0 errors, 0 warnings" in text


def test_list_checks(cli: Cli) -> None:
    checks = json.loads(cli.ok("db", "doctor", "--list-checks", "--json").stdout)
    names = [c["check"] for c in checks]
    assert names[:5] == [
        "file_access",
        "sqlite_header",
        "integrity",
        "foreign_keys",
        "journal_mode",
    ]
    assert {
        "version_table",
        "missing_table",
        "missing_column",
        "column_mismatch",
        "missing_index",
        "extra_objects",
        "stuck_sessions",
        "failed_running",
        "missing_current_step",
        "orphan_logs",
    } <= set(names)


def test_dropped_table_end_to_end(cli: Cli) -> None:
    """The bug report on a fresh database: refuse, diagnose, repair, run."""
    sid = new_session(cli, LOOP_FLOW)
    con = sqlite3.connect(cli.db)
    con.execute("DROP TABLE step_execution_logs")
    con.commit()
    con.close()
    before = session_row(cli.db, sid)
    refused = cli("run-next", str(sid))
    assert refused.exit_code == 1 and "step_execution_logs" in refused.stderr
    assert session_row(cli.db, sid) == before
    code, data = doctor(cli)
    assert code == 1
    missing = findings(data, "missing_table")
    assert [f["object"] for f in missing] == ["step_execution_logs"]
    assert missing[0]["fix"]["risk"] == "safe"
    assert missing[0]["fix"]["sql"][0].startswith("CREATE TABLE step_execution_logs")
    code, data = doctor(cli, "--fix", "--yes")
    assert code == 0, data
    backup = Path(data["backup"])
    assert backup.is_file() and backup.name.startswith(cli.db.name + ".doctor-")
    assert sqlite3.connect(backup).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    run = cli.json("run-next", str(sid))
    assert run["log"]["execution_order"] == 1 and len(logs(cli.db, sid)) == 1


def test_dropped_column_is_added_back_and_rows_survive(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet", "--max-steps", "3")
    con = sqlite3.connect(cli.db)
    con.execute("ALTER TABLE step_execution_logs DROP COLUMN context_snapshot")
    con.commit()
    con.close()
    code, data = doctor(cli)
    assert code == 1
    assert [f["object"] for f in findings(data, "missing_column")] == [
        "step_execution_logs.context_snapshot"
    ]
    code, data = doctor(cli, "--fix", "--yes")
    assert code == 0
    assert len(logs(cli.db, sid)) == 3
    cli.ok("auto", str(sid), "--quiet")
    assert len(logs(cli.db, sid)) == 9


def test_behind_head_is_upgraded(cli: Cli) -> None:
    cli.ok("db", "upgrade", "0001")
    code, data = doctor(cli)
    assert code == 1 and data["revision"]["state"] == "behind"
    refused = cli("session", "list")
    assert refused.exit_code == 1 and "flowcli db upgrade" in refused.stderr
    code, data = doctor(cli, "--fix", "--yes")
    assert code == 0 and data["revision"]["current"] == HEAD_REVISION
    assert any("upgraded" in a for a in data["repairs"])


def test_unversioned_with_matching_tables_is_stamped_then_upgraded(cli: Cli) -> None:
    cli.ok("db", "upgrade", "0002")
    con = sqlite3.connect(cli.db)
    con.execute("DROP TABLE flowcli_alembic_version")
    con.commit()
    con.close()
    code, data = doctor(cli)
    assert code == 1 and data["revision"]["state"] == "absent"
    code, data = doctor(cli, "--fix", "--yes")
    assert code == 0, data
    assert "stamped 0002 (its tables match that revision)" in data["repairs"]
    assert f"upgraded 0002 → {HEAD_REVISION}" in data["repairs"]


def test_unknown_revision_is_explained_never_stamped_over(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("UPDATE flowcli_alembic_version SET version_num = '9f9f'")
    con.commit()
    con.close()
    code, data = doctor(cli)
    assert code == 1 and data["revision"]["state"] == "unknown"
    finding = findings(data, "version_table")[0]
    assert finding["fix"]["risk"] == "manual" and "newer flowcli" in finding["detail"]
    code, data = doctor(cli, "--fix", "--yes")
    assert code == 1 and data["backup"] is None
    con = sqlite3.connect(cli.db)
    assert con.execute("SELECT version_num FROM flowcli_alembic_version").fetchall() == [("9f9f",)]


def test_extra_table_is_information_only(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("CREATE TABLE host_things (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO host_things (name) VALUES ('keep me')")
    con.commit()
    con.close()
    code, data = doctor(cli)
    assert code == 0
    extra = findings(data, "extra_table")
    assert [(f["object"], f["severity"]) for f in extra] == [("host_things", "info")]
    doctor(cli, "--fix", "--yes")
    con = sqlite3.connect(cli.db)
    assert con.execute("SELECT name FROM host_things").fetchall() == [("keep me",)]


def test_abandoned_running_step_is_repaired_with_fix_sessions(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    con = sqlite3.connect(cli.db)
    # What a process killed during an LLM call leaves: a claim and a running log row.
    con.execute(
        "INSERT INTO step_execution_logs (session_id, step_id, execution_order, status, "
        "attempt_count, round_index, loop_iteration) SELECT ?, current_step_id, 2, 'running', "
        "1, 1, 0 FROM sessions WHERE id = ?",
        (sid, sid),
    )
    con.execute(
        "UPDATE sessions SET lease_owner = 'host:1:dead', "
        "lease_expires_at = '2000-01-01 00:00:00' WHERE id = ?",
        (sid,),
    )
    con.commit()
    con.close()
    code, data = doctor(cli)
    assert code == 0  # a warning: the next run would recover it anyway
    stuck = findings(data, "stuck_sessions")
    assert [f["object"] for f in stuck] == [f"session {sid}"]
    assert stuck[0]["fix"]["applies_with"] == "sessions"
    code, data = doctor(cli, "--fix", "--yes")
    assert findings(data, "stuck_sessions")  # --fix alone leaves sessions alone
    code, data = doctor(cli, "--fix-sessions", "--yes")
    assert code == 0 and findings(data, "stuck_sessions") == []
    rows = logs(cli.db, sid)
    assert rows[1]["status"] == "failed" and "interrupted" in rows[1]["error_message"]
    assert session_row(cli.db, sid)["lease_owner"] is None
    cli.ok("auto", str(sid), "--quiet")
    assert session_row(cli.db, sid)["status"] == "finished"


def test_running_session_whose_last_execution_failed(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    con = sqlite3.connect(cli.db)
    con.execute(
        "UPDATE step_execution_logs SET status = 'failed', error_message = 'boom' "
        "WHERE session_id = ?",
        (sid,),
    )
    con.commit()
    con.close()
    code, data = doctor(cli, "--fix-sessions", "--yes")
    assert code == 0
    row = session_row(cli.db, sid)
    assert row["status"] == "failed" and "boom" in row["error_reason"]


def test_current_step_missing_from_snapshot(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("run-next", str(sid))
    con = sqlite3.connect(cli.db)
    con.execute("UPDATE sessions SET current_step_id = 424242 WHERE id = ?", (sid,))
    con.commit()
    con.close()
    code, data = doctor(cli)
    assert code == 1 and findings(data, "missing_current_step")
    code, data = doctor(cli, "--fix-sessions", "--yes")
    assert code == 0
    assert session_row(cli.db, sid)["status"] == "failed"


def test_orphan_logs_are_reported_not_deleted(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    con = sqlite3.connect(cli.db)
    con.execute("PRAGMA foreign_keys = OFF")
    con.execute("DELETE FROM messages WHERE session_id = ?", (sid,))
    con.execute("DELETE FROM session_roles WHERE session_id = ?", (sid,))
    con.execute("DELETE FROM sessions WHERE id = ?", (sid,))
    con.commit()
    con.close()
    code, data = doctor(cli, "--fix", "--fix-sessions", "--yes")
    assert findings(data, "orphan_logs")[0]["fix"]["risk"] == "manual"
    assert findings(data, "foreign_keys")
    assert sqlite3.connect(cli.db).execute(
        "SELECT count(*) FROM step_execution_logs"
    ).fetchone() == (9,)


def test_dry_run_prints_plan_and_changes_nothing(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("DROP TABLE messages")
    con.commit()
    con.close()
    before = cli.db.read_bytes()
    code, data = doctor(cli, "--fix", "--dry-run")
    assert code == 1
    assert [f["object"] for f in data["plan"] if f["check"] == "missing_table"] == ["messages"]
    text = cli("db", "doctor", "--fix", "--dry-run").stdout
    assert "CREATE TABLE messages" in text
    assert cli.db.read_bytes() == before
    assert not list(cli.db.parent.glob("*.bak"))


def test_fix_without_a_terminal_or_yes_changes_nothing(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("DROP TABLE messages")
    con.commit()
    con.close()
    # Piped input is not a terminal: the doctor does not read an answer from it.
    result = cli("db", "doctor", "--fix", input="y\n")
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert "messages" not in {
        r[0]
        for r in sqlite3.connect(cli.db).execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }


def test_no_backup_warns(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("DROP TABLE messages")
    con.commit()
    con.close()
    result = cli("db", "doctor", "--fix", "--yes", "--no-backup", "--json")
    assert result.exit_code == 0
    assert "without a backup" in result.stderr
    assert json.loads(result.stdout)["backup"] is None


@pytest.mark.parametrize("kind", ["random", "text", "directory", "missing"])
def test_unexaminable_files_exit_2(cli: Cli, kind: str) -> None:
    if kind == "random":
        cli.db.write_bytes(os.urandom(8192))
    elif kind == "text":
        cli.db.write_text("CREATE TABLE nonsense;\n" * 50)
    elif kind == "directory":
        cli.db.mkdir()
        # Refused before it is opened: one line, and "could not be examined" (issue 14).
        result = cli("db", "doctor", "--fix", "--yes", "--json")
        assert result.exit_code == 2 and "is a directory" in result.stderr
        assert cli.db.is_dir() and not any(cli.db.iterdir())
        return
    before = cli.db.read_bytes() if cli.db.is_file() else None
    code, data = doctor(cli, "--fix", "--yes")
    assert code == 2 and data["ok"] is False and data["examinable"] is False
    if before is not None:
        assert cli.db.read_bytes() == before
    assert kind == "missing" or cli.db.exists()
    assert kind != "missing" or not cli.db.exists()


def test_zero_byte_file_is_new_not_corrupt(cli: Cli) -> None:
    cli.db.write_bytes(b"")
    code, data = doctor(cli)
    assert code == 0
    f = findings(data, "file_access")[0]
    assert f["severity"] == "warning" and "not corrupt" in f["detail"]
    code, data = doctor(cli, "--fix", "--yes")
    assert code == 0 and data["revision"]["current"] == HEAD_REVISION


def test_truncated_file_is_reported_as_damaged(cli: Cli) -> None:
    sid = new_session(cli, LOOP_FLOW)
    cli.ok("auto", str(sid), "--quiet")
    con = sqlite3.connect(cli.db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    data_bytes = cli.db.read_bytes()
    cli.db.write_bytes(data_bytes[: len(data_bytes) // 2])
    before = cli.db.read_bytes()
    code, data = doctor(cli, "--fix", "--yes")
    assert code in (1, 2)
    assert data["ok"] is False
    assert cli.db.read_bytes() == before


def test_locked_database_exits_2_and_is_not_touched(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("DROP TABLE messages")
    con.commit()
    con.close()
    holder = subprocess.Popen(
        [
            "python3",
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(cli.db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\ntime.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        start = time.time()
        result = cli("--busy-timeout", "0.5", "db", "doctor", "--fix", "--yes")
        assert result.exit_code == 2, result.output
        assert "locked by another process" in result.stderr
        assert time.time() - start < 20
    finally:
        holder.kill()
        holder.wait()
    assert "messages" not in {
        r[0]
        for r in sqlite3.connect(cli.db).execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert not list(cli.db.parent.glob("*.bak"))


def test_journal_mode_delete_is_switched_to_wal(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    code, data = doctor(cli)
    assert findings(data, "journal_mode")[0]["severity"] == "warning"
    # Examining did not switch it.
    assert sqlite3.connect(cli.db).execute("PRAGMA journal_mode").fetchone() == ("delete",)
    doctor(cli, "--fix", "--yes")
    assert sqlite3.connect(cli.db).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_strict_counts_warnings(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    con = sqlite3.connect(cli.db)
    con.execute("DROP INDEX ix_sessions_status")
    con.commit()
    con.close()
    assert doctor(cli)[0] == 0
    assert doctor(cli, "--strict")[0] == 1


class TestRealMrcFile:
    """The bug report on the real MRC database, with step_execution_logs dropped."""

    def test_adopt_then_run_session_51(self, make_cli, mrc_copy: Path) -> None:
        cli = make_cli(mrc_copy)
        con = sqlite3.connect(mrc_copy)
        con.execute("DROP TABLE step_execution_logs")
        con.commit()
        con.close()
        before = table_counts(mrc_copy)
        refused = cli("run-next", "51")
        assert refused.exit_code == 1 and "flowcli db doctor --fix" in refused.stderr
        code, data = doctor(cli)
        assert code == 1
        # MRC's dropped table; flowcli's own tables are additions adoption makes, not drift
        assert [f["object"] for f in findings(data, "missing_table")] == ["step_execution_logs"]
        code, data = doctor(cli, "--fix", "--yes")
        assert code == 0, data
        assert [f for f in data["findings"] if f["severity"] == "error"] == []
        warned = {f["object"] for f in data["findings"] if f["severity"] == "warning"}
        assert {"sessions.topic", "flow_steps.loop_config", "flow_steps.condition_config"} <= warned
        con = sqlite3.connect(mrc_copy)
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("281ca6b9ad00",)
        ]
        con.close()
        after = table_counts(mrc_copy)
        for table, count in before.items():
            assert after[table] == count, table
        first = cli.json("run-next", "51")
        assert first["log"]["step_id"] == 21
        summary = cli.json("auto", "--session", "51")
        assert summary["final_status"] == "finished"
        rows = logs(mrc_copy, 51)
        assert [r["step_id"] for r in rows] == [21, 22, 21, 22, 21, 22, 21, 22, 23]
        assert step_orders(rows) == [1, 2, 1, 2, 1, 2, 1, 2, 3]
        # MRC's messages need a speaker session role: created by role name, as MRC did.
        roles = {
            r[0]
            for r in sqlite3.connect(mrc_copy).execute(
                "SELECT role_ref FROM session_roles WHERE session_id = 51"
            )
        }
        assert roles == {"Jonh", "Mason", "Tom"}

    def test_unmodified_mrc_file_is_adopted_by_revision_match(
        self, make_cli, mrc_copy: Path
    ) -> None:
        cli = make_cli(mrc_copy)
        code, data = doctor(cli, "--fix", "--yes")
        assert code == 0, data
        assert "stamped 0001 (its tables match that revision)" in data["repairs"]
        cli.ok("auto", "51", "--quiet")
        assert session_row(mrc_copy, 51)["status"] == "finished"


def test_doctor_subprocess_on_a_copy_of_mrc(mrc_copy: Path) -> None:
    proc = subprocess.run(
        [*flowcli_subprocess_cmd(), "--db", str(mrc_copy), "db", "doctor"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "fixable with --fix" in proc.stdout
