"""`flowcli db …`, database selection and the error boundary, as a user runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from flowcli.db.revisions import HEAD_REVISION
from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env


def test_upgrade_creates_every_table(cli: Cli) -> None:
    result = cli.ok("db", "upgrade")
    assert f"is at {HEAD_REVISION}" in result.stderr
    con = sqlite3.connect(cli.db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "roles",
        "flow_templates",
        "flow_steps",
        "sessions",
        "session_roles",
        "messages",
        "step_execution_logs",
        "flowcli_alembic_version",
    } <= tables


def test_current_prints_head(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    assert cli.ok("db", "current").stdout.strip() == f"{HEAD_REVISION} (head)"
    data = cli.json("db", "current")
    assert data["current"] == HEAD_REVISION and data["is_head"] is True


def test_current_does_not_create_a_missing_file(cli: Cli) -> None:
    # `db current` only reads: a mistyped path is an error saying how to create it.
    assert not cli.db.exists()
    result = cli("db", "current")
    assert result.exit_code == 1 and "flowcli db upgrade" in result.stderr
    assert not cli.db.exists()
    cli.ok("db", "upgrade")
    assert cli.json("db", "current")["current"] == HEAD_REVISION


def test_empty_file_is_created_at_head_by_upgrade(cli: Cli) -> None:
    cli.db.write_bytes(b"")
    assert cli("db", "current").exit_code == 1
    assert cli.db.stat().st_size == 0
    cli.ok("db", "upgrade")
    assert cli.json("db", "current")["current"] == HEAD_REVISION


def test_history_lists_revisions(cli: Cli) -> None:
    revs = cli.json("db", "history")
    assert [r["revision"] for r in revs][0] == HEAD_REVISION
    assert revs[0]["is_head"] is True
    table = cli.ok("db", "history").stdout
    assert "0001" in table and "head" in table


def test_downgrade_and_stamp(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    cli.ok("db", "downgrade", "0001", "--yes")
    assert cli.json("db", "current")["current"] == "0001"
    cli.ok("db", "stamp", HEAD_REVISION, "--yes")
    assert cli.json("db", "current")["current"] == HEAD_REVISION


def test_unknown_revision_is_a_clean_error(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    result = cli("db", "stamp", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unknown revision 'nope'")
    assert "Traceback" not in result.output


def test_default_database_is_flowcli_db_in_cwd(
    runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowcli.cli.app import app

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "flowcli.db").is_file()


def test_env_var_selects_database(runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcli.cli.app import app

    target = tmp_path / "from-env.db"
    monkeypatch.setenv("FLOWCLI_DB", str(target))
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert target.is_file()


def test_option_beats_env_var(runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcli.cli.app import app

    monkeypatch.setenv("FLOWCLI_DB", str(tmp_path / "env.db"))
    result = runner.invoke(app, ["--db", str(tmp_path / "opt.db"), "db", "upgrade"])
    assert result.exit_code == 0
    assert (tmp_path / "opt.db").is_file() and not (tmp_path / "env.db").exists()


def test_sqlalchemy_url_is_accepted(runner, tmp_path: Path) -> None:
    from flowcli.cli.app import app

    url = f"sqlite:///{tmp_path / 'url.db'}"
    result = runner.invoke(app, ["--db", url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "url.db").is_file()


@pytest.mark.parametrize("kind", ["directory", "random", "text", "missing_parent"])
def test_bad_database_targets(runner, tmp_path: Path, kind: str) -> None:
    from flowcli.cli.app import app

    target = tmp_path / "target.db"
    before = None
    if kind == "directory":
        target.mkdir()
    elif kind == "random":
        target.write_bytes(os.urandom(4096))
    elif kind == "text":
        target.write_text("hello, I am not a database\n" * 10)
    else:
        target = tmp_path / "no" / "such" / "dir" / "x.db"
    if target.is_file():
        before = target.read_bytes()
    result = runner.invoke(app, ["--db", str(target), "db", "upgrade"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    if before is not None:
        assert target.read_bytes() == before
        assert not Path(str(target) + "-wal").exists()


def test_unreadable_file(unprivileged) -> None:
    target = unprivileged.dir / "locked.db"
    con = sqlite3.connect(target)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    target.chmod(0)
    proc = unprivileged.run("--db", str(target), "db", "current")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"Error: cannot read {target}: Permission denied (EACCES)"


def test_debug_shows_traceback(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    plain = subprocess.run(
        [*flowcli_subprocess_cmd(), "--db", str(target), "db", "upgrade"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run(
        [*flowcli_subprocess_cmd(), "--debug", "--db", str(target), "db", "upgrade"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_usage_error_exits_2(cli: Cli) -> None:
    result = cli("db", "no-such-command")
    assert result.exit_code == 2


def test_version_flag() -> None:
    proc = subprocess.run(
        [*flowcli_subprocess_cmd(), "--version"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    from flowcli import __version__

    assert proc.returncode == 0 and proc.stdout.strip() == f"flowcli {__version__}"


def test_json_is_one_document(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    out = cli.ok("db", "history", "--json").stdout
    assert isinstance(json.loads(out), list)
