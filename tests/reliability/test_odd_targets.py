"""Odd ``--db`` targets, and missing databases met by commands that need one (issues 14, 15).

`--db` must name a regular file or a place where one can be created. A FIFO used to block
forever; the doctor called a FIFO, /dev/zero, /dev/null and /proc/self/mem "empty … just
new"; flowcli wrote /dev/null-journal; `my?mode=ro.db` wrote a file called `my` and
`c%41.db` opened `cA.db`; a symlink loop, a 300-character name and `mysql://` said
"unexpected …". A mistyped path on a command that reads (or acts on a session) created a
new empty database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Cli, subprocess_env
from tests.helpers import run_sql
from tests.reliability.kill import flowcli

BACKENDS = ("sqlite", "postgres")


def _fifo(tmp: Path) -> str:
    path = tmp / "pipe.db"
    os.mkfifo(path)
    return str(path)


def _directory(tmp: Path) -> str:
    (tmp / "folder.db").mkdir()
    return str(tmp / "folder.db")


def _symlink_loop(tmp: Path) -> str:
    (tmp / "a.db").symlink_to(tmp / "b.db")
    (tmp / "b.db").symlink_to(tmp / "a.db")
    return str(tmp / "a.db")


ODD_TARGETS: dict[str, tuple[Callable[[Path], str], str]] = {
    # name: (make the target, what the one Error line says)
    "fifo": (_fifo, "FIFO"),
    "dev-zero": (lambda tmp: "/dev/zero", "is a device"),
    "dev-null": (lambda tmp: "/dev/null", "is a device"),
    "proc-self-mem": (lambda tmp: "/proc/self/mem", "Input/output error"),
    "proc-self-status": (lambda tmp: "/proc/self/status", "not a file on disk"),
    "directory": (_directory, "is a directory"),
    "symlink-loop": (_symlink_loop, "symbolic link loop"),
    "name-too-long": (lambda tmp: str(tmp / ("n" * 300 + ".db")), "ENAMETOOLONG"),
    "missing-folder": (lambda tmp: str(tmp / "nowhere" / "x.db"), "does not exist"),
    "mysql-url": (lambda tmp: "mysql://user:pw@localhost/db", "unsupported database URL"),
    "empty": (lambda tmp: "", "is empty"),
}
COMMANDS = [
    ("session", "list"),  # reads
    ("role", "add", "A", "--prompt", "You are A."),  # writes
    ("db", "doctor"),
    ("db", "doctor", "--fix", "--yes"),
    ("db", "upgrade"),
]


def _stray_files() -> set[str]:
    """Files flowcli must never create beside a device: journals, WALs, doctor backups."""
    return {
        name
        for name in os.listdir("/dev")
        if name.startswith(("null", "zero")) and name not in ("null", "zero")
    }


def _run(
    target: str, command: tuple[str, ...], cwd: Path, *, in_a_process: bool
) -> tuple[int, str, str]:
    if not in_a_process:
        result = flowcli(target, *command)  # type: ignore[arg-type]  # str() of it is the --db
        return result.exit_code, result.stdout, result.stderr
    # A real process with a timeout: opening a FIFO used to block, for ever.
    proc = subprocess.run(
        [sys.executable, "-m", "flowcli", "--db", target, *command],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=cwd,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("name", list(ODD_TARGETS))
def test_odd_targets_get_one_line_and_a_non_zero_exit(tmp_path: Path, name: str) -> None:
    make, expected = ODD_TARGETS[name]
    target = make(tmp_path)
    before_dev = _stray_files()
    before_tmp = sorted(os.listdir(tmp_path))
    for command in COMMANDS:
        started = time.monotonic()
        code, stdout, stderr = _run(target, command, tmp_path, in_a_process=name == "fifo")
        assert time.monotonic() - started < 120  # never blocks: a FIFO would hang for good
        assert code != 0, (command, stdout)
        assert "Traceback" not in stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (command, stderr)
        assert expected in lines[0], lines[0]
        assert "unexpected" not in lines[0]
        assert "just new" not in stdout + stderr
        if command[:2] == ("db", "doctor"):
            assert code == 2  # "could not be examined"
    assert _stray_files() == before_dev
    assert sorted(os.listdir(tmp_path)) == before_tmp  # nothing created beside it either


@pytest.mark.parametrize("name", ["my?mode=ro.db", "c%41.db", "x#frag.db", "file:z.db"])
def test_a_plain_path_is_never_parsed_as_a_url(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    path = folder / name
    result = flowcli(path, "role", "add", "A", "--prompt", "You are A.")
    assert result.exit_code == 0, result.output
    assert os.listdir(folder) == [name]
    assert flowcli(path, "role", "list", "--json").exit_code == 0


# Commands that work on existing rows (reading, or acting on a session), each with
# arguments that would be valid on a real database.
COMMANDS_ON_EXISTING_ROWS = [
    ("session", "list"),
    ("session", "show", "1"),
    ("session", "transcript", "1"),
    ("session", "diff", "1", "2"),
    ("flow", "list"),
    ("flow", "show", "1"),
    ("flow", "export", "1"),
    ("flow", "graph", "1"),
    ("role", "list"),
    ("role", "show", "A"),
    ("logs", "1"),
    ("logs", "show", "1"),
    ("logs", "stats", "1"),
    ("logs", "timeline", "1"),
    ("explain", "1"),
    ("db", "current"),
    ("run-next", "1"),
    ("auto", "1"),
    ("session", "pause", "1"),
    ("session", "skip", "1"),
    ("session", "delete", "1", "--yes"),
]


@pytest.mark.parametrize("empty_file", [False, True], ids=["missing", "zero-bytes"])
def test_commands_on_existing_rows_never_create_a_database(
    tmp_path: Path, empty_file: bool
) -> None:
    folder = tmp_path / "reads"
    folder.mkdir()
    mistyped = folder / "flowcli.dbb"
    if empty_file:
        mistyped.touch()
    for command in COMMANDS_ON_EXISTING_ROWS:
        result = flowcli(mistyped, *command)
        assert result.exit_code == 1, (command, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "flowcli db upgrade" in lines[0], (command, lines)
        assert os.listdir(folder) == (["flowcli.dbb"] if empty_file else []), command
        assert not empty_file or mistyped.stat().st_size == 0
    # The doctor examines without creating (an empty file is "new, not corrupt"), and
    # `flow validate` needs no database at all.
    assert flowcli(mistyped, "db", "doctor").exit_code == (0 if empty_file else 2)
    flow = folder / "flow.yaml"
    flow.write_text("name: f\nroles: {A: {prompt: a}}\nsteps: [{speaker: A, task: comment}]\n")
    assert flowcli(mistyped, "flow", "validate", str(flow)).exit_code == 0
    assert sorted(os.listdir(folder)) == sorted(
        ["flow.yaml"] + (["flowcli.dbb"] if empty_file else [])
    )
    # A command that adds something new creates it.
    assert flowcli(mistyped, "flow", "import", str(flow)).exit_code == 0
    assert flowcli(mistyped, "flow", "list").exit_code == 0


def test_an_empty_database_on_a_read_command_creates_no_tables(cli: Cli) -> None:
    result = cli("session", "list")
    assert result.exit_code == 1
    assert "flowcli db upgrade" in result.stderr
    if cli.backend == "postgres":
        tables = run_sql(
            cli.db,
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema()",
        )
        assert tables == []
    else:
        assert isinstance(cli.db, Path) and not cli.db.exists()
    cli.ok("role", "add", "A", "--prompt", "You are A.")  # a write creates the tables
    assert cli.json("session", "list") == []


@pytest.mark.sqlite_only
def test_the_doctor_leaves_no_wal_beside_a_truncated_wal_file(cli: Cli, tmp_path: Path) -> None:
    cli.ok("role", "add", "A", "--prompt", "You are A.")
    assert isinstance(cli.db, Path)
    data = cli.db.read_bytes()
    assert data[18:20] == b"\x02\x02"  # WAL mode
    for size in (len(data) // 2, 100):
        cut = tmp_path / f"cut-{size}.db"
        cut.write_bytes(data[:size])
        result = flowcli(cut, "db", "doctor", "--json")
        assert result.exit_code in (1, 2)
        assert sorted(p.name for p in tmp_path.glob(f"cut-{size}.db*")) == [cut.name]
        assert cut.read_bytes() == data[:size]
