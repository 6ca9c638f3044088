"""The durability setting: SQLite's synchronous level for the steps a command writes, from
the flag, the environment or the config file (in that order of precedence), observed on
the connections the command really opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from flowcli.db import connection
from tests.conftest import WIDE_ENV, Cli
from tests.engine.test_semantics import LOOP_FLOW
from tests.helpers import new_session

NORMAL, FULL = 1, 2  # PRAGMA synchronous reads back as a number


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The synchronous level of every SQLite connection opened, read back from SQLite."""
    levels: list[int] = []
    configure = connection.configure_sqlite

    def observed(dbapi_conn: sqlite3.Connection, *args: object, **kwargs: object) -> None:
        configure(dbapi_conn, *args, **kwargs)  # type: ignore[arg-type]
        levels.append(dbapi_conn.execute("PRAGMA synchronous").fetchone()[0])

    monkeypatch.setattr(connection, "configure_sqlite", observed)
    return levels


@pytest.fixture
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database holding session 1, not yet started, of a flow with more steps than a
    test runs."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "d.db"
    assert new_session(Cli(CliRunner(), db), LOOP_FLOW) == 1
    return db


def _run_next(db: Path, *flags: str, env: dict[str, str] | None = None) -> None:
    result = CliRunner().invoke(
        app, ["--db", str(db), "run-next", "1", *flags], env={**WIDE_ENV, **(env or {})}
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("file_value", "env_value", "flag", "expected"),
    [
        (None, None, None, NORMAL),  # the default
        ("full", None, None, FULL),  # the config file
        (None, "full", None, FULL),  # the environment
        (None, None, "full", FULL),  # the flag
        ("full", "normal", None, NORMAL),  # the environment beats the file
        (None, "full", "normal", NORMAL),  # the flag beats the environment
        ("normal", None, "full", FULL),  # the flag beats the file
    ],
)
def test_synchronous_level_follows_flag_env_file_default(
    demo_db: Path,
    seen: list[int],
    monkeypatch: pytest.MonkeyPatch,
    file_value: str | None,
    env_value: str | None,
    flag: str | None,
    expected: int,
) -> None:
    if file_value is not None:
        (demo_db.parent / "flowcli.toml").write_text(f'durability = "{file_value}"\n')
    monkeypatch.delenv("FLOWCLI_DURABILITY", raising=False)
    env = {"FLOWCLI_DURABILITY": env_value} if env_value is not None else {}
    _run_next(demo_db, *(["--durability", flag] if flag else []), env=env)
    assert seen, "run-next opened no SQLite connection"
    assert set(seen) == {expected}


@pytest.mark.parametrize(
    "command", [["auto", "1", "--max-steps", "1"], ["worker", "--max-idle", "0", "--batch", "1"]]
)
def test_other_step_writers_take_the_option(
    demo_db: Path, seen: list[int], command: list[str]
) -> None:
    result = CliRunner().invoke(
        app, ["--db", str(demo_db), *command, "--durability", "full"], env=WIDE_ENV
    )
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {FULL}


def test_full_on_a_rollback_journal_database_too(tmp_path: Path) -> None:
    # A database in rollback-journal mode (as MRC's is) is FULL under either setting,
    # since NORMAL is only crash-safe in WAL mode.
    path = tmp_path / "j.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    for durability in ("normal", "full"):
        conn = sqlite3.connect(path)
        connection.configure_sqlite(conn, 1.0, durability)
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL
        conn.close()


@pytest.mark.parametrize(
    ("args", "env", "file_text", "needle"),
    [
        (["--durability", "fast"], {}, None, "--durability"),
        ([], {"FLOWCLI_DURABILITY": "fast"}, None, "fast"),
        ([], {}, 'durability = "fast"\n', "durability"),
        ([], {}, "durability = 1\n", "durability must be a string"),
    ],
)
def test_a_bad_value_is_a_usage_error(
    demo_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    file_text: str | None,
    needle: str,
) -> None:
    if file_text is not None:
        (demo_db.parent / "flowcli.toml").write_text(file_text)
    before = sqlite3.connect(demo_db).execute("SELECT count(*) FROM step_execution_logs")
    count = before.fetchone()[0]
    result = CliRunner().invoke(
        app, ["--db", str(demo_db), "run-next", "1", *args], env={**WIDE_ENV, **env}
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], lines
    assert "Traceback" not in result.output
    after = sqlite3.connect(demo_db).execute("SELECT count(*) FROM step_execution_logs")
    assert after.fetchone()[0] == count  # nothing written


def test_config_show_names_the_durability_and_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flowcli.toml").write_text('durability = "full"\n')
    result = CliRunner().invoke(app, ["config", "show", "--json"], env=WIDE_ENV)
    assert result.exit_code == 0, result.output
    import json

    rows = {row["key"]: row for row in json.loads(result.stdout)["settings"]}
    assert rows["durability"]["value"] == "full"
    assert "project file" in rows["durability"]["source"]
