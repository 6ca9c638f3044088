"""The rough edges a new user hits: one-line usage errors, --help in one readable
shape, -q and -V on every command, messages that name the fix, confirmations that
need --yes without a terminal, plurals."""

from __future__ import annotations

import os
import pty
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flowcli import __version__
from flowcli.cli.app import app
from tests.cli.test_help import _walk
from tests.conftest import WIDE_ENV, Cli, subprocess_env


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run-next", "abc"], "SESSION_ID must be a whole number, not 'abc'"),
        (["run-next", "-5"], "-5 is not allowed here"),
        (["run-next", "0"], "SESSION_ID must be at least 1"),
        (["session", "list", "--limit", "x"], "--limit must be a whole number"),
        (["logs", "1", "--bogus"], "No such option: --bogus"),
        (["session", "show"], "Missing argument"),
    ],
)
def test_usage_errors_are_one_line_naming_help(
    runner: CliRunner, tmp_path: Path, args: list[str], expected: str
) -> None:
    result = runner.invoke(app, ["--db", str(tmp_path / "x.db"), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and expected in lines[0]
    assert re.search(r"\(see 'flowcli [a-z -]+ --help'\)$", lines[0])
    assert result.stdout == ""


INTERNAL = re.compile(
    r"<int range>|<float range>|<str>|\{[a-z_]+\}|\[[a-z_]+_arg\]|<int>|<float>|[A-Z_]+_ARG\b"
)


def test_help_has_one_readable_shape_for_every_command(runner: CliRunner) -> None:
    root = typer.main.get_command(app)
    env = dict(WIDE_ENV, COLUMNS="80")
    for path, cmd in _walk(root):
        out = runner.invoke(app, [*path, "--help"], env=env).stdout
        assert out.startswith("Usage: flowcli"), path
        assert not INTERNAL.search(out), (path, INTERNAL.search(out))
        assert "╭" not in out and "│" not in out, path  # plain like the root, not boxed
        assert max(len(line) for line in out.splitlines()) <= 80, path
        for url in re.findall(r"https?://\S+", " ".join(out.split())):
            assert url in out, (path, url)  # a URL is never broken across lines
        if not hasattr(cmd, "list_commands") and path:  # a command, not a group
            assert "-q, --quiet" in out and "-V, --version" in out, path
            assert "--no-pager" in out, path


@pytest.mark.parametrize("args", [["-V"], ["session", "list", "-V"], ["logs", "-V"]])
def test_version_everywhere(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(app, args)
    if args == ["logs", "-V"]:
        args = ["logs", "list", "-V"]
        result = runner.invoke(app, args)
    assert result.exit_code == 0 and result.stdout.strip() == f"flowcli {__version__}"


def test_quiet_everywhere(cli: Cli) -> None:
    loud = cli("demo")
    assert "imported" in loud.stderr
    for args in (["-q", "demo"], ["demo", "-q"], ["demo", "--quiet"]):
        quiet = cli(*args)
        assert quiet.exit_code == 0 and "imported" not in quiet.stderr
    assert cli("session", "list", "-q").exit_code == 0


def test_plurals(cli: Cli, tmp_path: Path) -> None:
    flow = tmp_path / "one.yaml"
    flow.write_text(
        "name: one\nroles: {A: {prompt: a}}\n"
        "steps: [{speaker_role_ref: A, task_type: comment, context_scope: none}]\n"
    )
    assert "(1 step)" in cli.ok("flow", "validate", str(flow)).stdout
    imported = cli.ok("flow", "import", str(flow))
    assert "1 step)" in imported.stderr and "1 steps" not in imported.stderr
    sid = cli.json("session", "create", "--flow", imported.stdout.strip())["id"]
    ran = cli.ok("auto", str(sid))
    assert "1 step run" in ran.stderr
    stats = cli.ok("logs", "stats", str(sid)).stdout
    assert "1 execution:" in stats and "0 failures" in stats and "1 failures" not in stats


def test_flow_import_lists_every_problem(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nsteps:\n"
        "  - {speaker_role_ref: A, task_type: nonsense, context_scope: none}\n"
        "  - {speaker_role_ref: B, task_type: nonsense2, context_scope: none}\n"
    )
    imported = cli("flow", "import", str(bad))
    validated = cli("flow", "validate", str(bad))
    assert imported.exit_code == validated.exit_code == 1
    assert len(imported.stderr.strip().splitlines()) >= 2
    assert imported.stderr == validated.stderr


def test_psycopg_missing_says_what_to_install(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    result = CliRunner().invoke(
        app, ["--db", "postgresql+psycopg://u@127.0.0.1:1/x", "session", "list"], env=WIDE_ENV
    )
    assert result.exit_code == 1
    assert "pip install 'flowcli[postgres]'" in result.stderr
    assert "unexpected" not in result.stderr


def test_upgrade_on_an_unadopted_database_names_the_doctor(mrc_copy: Path, runner) -> None:
    before = mrc_copy.read_bytes()
    result = runner.invoke(app, ["--db", str(mrc_copy), "db", "upgrade"])
    assert result.exit_code == 1
    assert "db doctor --fix" in result.stderr and "already exists" not in result.stderr
    assert mrc_copy.read_bytes() == before


def test_confirmations_need_yes_without_a_terminal(cli: Cli) -> None:
    cli.ok("demo")
    deleted = cli("session", "delete", "1")
    assert deleted.exit_code == 2 and "pass --yes" in deleted.stderr
    assert "Aborted" not in deleted.stderr + deleted.stdout
    assert cli.json("session", "show", "1")["id"] == 1
    con = sqlite3.connect(cli.db)
    con.execute("DROP TABLE messages")
    con.commit()
    con.close()
    fixed = cli("db", "doctor", "--fix")
    assert fixed.exit_code == 2 and "pass --yes" in fixed.stderr


def test_doctor_fix_on_a_terminal_shows_findings_before_asking(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    env = subprocess_env()
    run = [sys.executable, "-m", "flowcli", "--db", str(db)]
    subprocess.run([*run, "db", "upgrade"], env=env, check=True, capture_output=True)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE messages")
    con.commit()
    con.close()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*run, "db", "doctor", "--fix"], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    seen = b""
    while b"Apply these repairs?" not in seen:
        chunk = os.read(master, 4096)
        assert chunk, seen
        seen += chunk
    os.write(master, b"n\n")
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
    assert proc.wait(timeout=120) == 1
    os.close(master)
    text = seen.decode()
    assert text.index("messages") < text.index("The doctor will:") < text.index("Apply")
    assert "messages" not in {
        r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")
    }


def test_doctor_is_short_at_80_columns(tmp_path: Path, runner: CliRunner) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    result = runner.invoke(
        app, ["--db", str(junk), "db", "doctor"], env=dict(WIDE_ENV, COLUMNS="80")
    )
    assert result.exit_code == 2
    assert result.stdout.count("not a SQLite database") <= 3
    assert len(result.stdout.splitlines()) < 40


def test_doctor_dry_run_sql_is_on_lines_of_its_own(mrc_copy: Path, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["--db", str(mrc_copy), "db", "doctor", "--dry-run"], env=dict(WIDE_ENV, COLUMNS="80")
    )
    statements = [ln.strip() for ln in result.stdout.splitlines() if "ALTER TABLE" in ln]
    assert statements and all(s.startswith("ALTER TABLE") for s in statements)
    table = [line for line in result.stdout.splitlines() if "│" in line or "┃" in line]
    assert table and all(len(line) <= 80 for line in table)
    plan = [ln for ln in result.stdout.splitlines() if re.match(r"\s+\d+\. ", ln)]
    assert len(plan) == len(set(plan))


def test_session_list_filters_and_pages(cli: Cli) -> None:
    cli.ok("demo")
    cli.ok("demo")
    sessions = cli.json("session", "list")
    assert [s["id"] for s in sessions] == [2, 1]
    assert [s["id"] for s in cli.json("session", "list", "--limit", "1")] == [2]
    assert [s["id"] for s in cli.json("session", "list", "--limit", "1", "--offset", "1")] == [1]
    assert [s["id"] for s in cli.json("session", "list", "--flow", "2")] == [2]
    assert cli.json("session", "list", "--since", "2999-01-01T00:00:00Z") == []
    assert len(cli.json("session", "list", "--since", "2000-01-01")) == 2
    assert cli("session", "list", "--since", "yesterday").exit_code == 2


def test_an_error_raised_while_ctrl_c_is_handled_is_reported_as_the_interrupt() -> None:
    # A driver whose cleanup fails after Ctrl-C (psycopg's rollback after a cancelled
    # query) must not turn the user's Ctrl-C into "Error: <the cleanup's failure>", exit 1.
    from flowcli.errors import DatabaseError, raised_by_interrupt

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise DatabaseError("the connection is lost") from None
    except DatabaseError as exc:
        assert raised_by_interrupt(exc)  # `from None` hides the cause, not the context
    assert not raised_by_interrupt(DatabaseError("locked"))
    assert raised_by_interrupt(KeyboardInterrupt())


def test_sqlalchemy_log_records_never_reach_stderr(tmp_path: Path) -> None:
    # Python prints an error record with its traceback when no handler is configured:
    # SQLAlchemy's pool logged "Exception during reset" that way after a Ctrl-C.
    code = (
        "import logging, sys\n"
        "from flowcli.db.connection import create_db_engine, resolve_target\n"
        "create_db_engine(resolve_target(sys.argv[1]))\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    pool = logging.getLogger('sqlalchemy.pool.impl.QueuePool')\n"
        "    pool.exception('Exception during reset')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_number_options_name_their_unit_not_text() -> None:
    """A number option (plain, or bounded by flowcli.cli.params) shows N, ID, SECONDS or
    NUMBER, never Click's TEXT; a path option PATH; a choice lists its choices."""
    from flowcli.cli.params import BoundedNumber

    root = typer.main.get_command(app)
    wrong = []
    for path, cmd in _walk(root):
        for param in cmd.params:
            if param.param_type_name != "option" or param.is_flag:
                continue
            kind = param.type
            func = getattr(kind, "func", None)
            numeric = kind.name in ("integer", "float") or isinstance(func, BoundedNumber)
            if numeric and param.metavar not in ("N", "ID", "SECONDS", "NUMBER"):
                wrong.append((" ".join(path), param.name, param.metavar))
            if kind.name == "path" and param.metavar != "PATH":
                wrong.append((" ".join(path), param.name, param.metavar))
            if getattr(kind, "choices", None) and param.metavar is not None:
                wrong.append((" ".join(path), param.name, param.metavar))
    assert not wrong
