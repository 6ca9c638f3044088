"""A long log table on a terminal streams: the header and the first screen are written
before the rest of the rows is read, through the pager as they come; the lines stay
aligned and fit at 80 and 200 columns; pipes still get every row, whole."""

from __future__ import annotations

import io
import os
import pty
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from tests.conftest import WIDE_ENV, subprocess_env

ROWS = 10_000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ROW = re.compile(r"^ *(\d+)  ")


def grow_session(db: Path, rows: int, at: dict[int, dict[str, Any]] | None = None) -> None:
    """Session 1 of the demo grown to ``rows`` executions, repeating its own rows in
    order; ``at`` maps a new row's execution order to column values it gets instead."""
    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute("PRAGMA table_info(step_execution_logs)") if r[1] != "id"]
    templates = con.execute(
        f"SELECT {', '.join(cols)} FROM step_execution_logs WHERE session_id = 1 "
        "ORDER BY execution_order"
    ).fetchall()
    special = at or {}
    batch = []
    for order in range(len(templates) + 1, rows + 1):
        row = dict(zip(cols, templates[order % len(templates)], strict=True))
        row.update(execution_order=order, parent_log_id=None)
        row.update(special.get(order, {}))
        batch.append([row[c] for c in cols])
    con.executemany(
        f"INSERT INTO step_execution_logs ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})",
        batch,
    )
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("streamed") / "flowcli.db"
    result = CliRunner().invoke(app, ["--db", str(db), "demo"], env=WIDE_ENV)
    assert result.exit_code == 0, result.output
    grow_session(db, ROWS)
    return db


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


# The pager: the first read returns what flowcli had written when the pager started
# (it starts once a screenful waits); that is recorded apart from the rest.
PAGER = """
import os, sys
first = os.read(0, 1 << 20)
rest = sys.stdin.buffer.read()
open(sys.argv[1], "wb").write(first)
open(sys.argv[2], "wb").write(rest)
"""


def test_the_pager_gets_the_header_and_first_rows_first(big_db: Path, tmp_path: Path) -> None:
    pager = tmp_path / "pager.py"
    pager.write_text(PAGER)
    first_file, rest_file = tmp_path / "first", tmp_path / "rest"
    env = subprocess_env(
        LINES="30",
        COLUMNS="120",
        FLOWCLI_PAGER=f"{sys.executable} {pager} {first_file} {rest_file}",
    )
    env.pop("TTY_COMPATIBLE")
    _on_a_terminal([sys.executable, "-m", "flowcli", "--db", str(big_db), "logs", "1"], env)
    first = _ANSI.sub("", first_file.read_text(encoding="utf-8")).splitlines()
    rest = _ANSI.sub("", rest_file.read_text(encoding="utf-8")).splitlines()
    assert first[0] == "session 1"
    assert first[1].split()[:2] == ["#", "round"]  # the header, once, before any row
    shown = [int(m.group(1)) for line in first if (m := _ROW.match(line))]
    # At least the screen, and far from all: the pipe holds at most 64 KiB at a time.
    assert 25 <= len(shown) < 1000
    assert shown == list(range(1, len(shown) + 1))
    later = [int(m.group(1)) for line in rest if (m := _ROW.match(line))]
    assert shown + later == list(range(1, ROWS + 1))  # every row, once, in order
    assert not any(line.split()[:2] == ["#", "round"] for line in rest)


class _FirstWrite(io.StringIO):
    """stdout that notes how many rows had been read when the first text arrived."""

    def __init__(self, rows_read: list[int]) -> None:
        super().__init__()
        self.rows_read = rows_read
        self.read_at_first_write: int | None = None
        self.first_text = ""

    def write(self, text: str) -> int:
        if self.read_at_first_write is None:
            self.read_at_first_write = self.rows_read[0]
            self.first_text = text
        return super().write(text)


def test_the_first_screen_is_written_before_the_rest_is_read(
    big_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowcli.db.connection import Database, resolve_target
    from flowcli.db.log_queries import SUMMARY_COLUMNS, iter_logs
    from flowcli.render.log_table import logs_table
    from flowcli.render.output import OutputSettings, configure, finish

    read = [0]

    def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            read[0] += 1
            yield row

    for key, value in {**WIDE_ENV, "LINES": "30", "COLUMNS": "200"}.items():
        monkeypatch.setenv(key, value)
    screen = _FirstWrite(read)
    monkeypatch.setattr(sys, "stdout", screen)
    configure(OutputSettings(pager=None))
    db = Database(resolve_target(str(big_db)))
    try:
        with db.read() as conn:
            shown = logs_table(
                counted(iter_logs(conn, 1, columns=SUMMARY_COLUMNS)), title="session 1"
            )
    finally:
        finish()
        db.dispose()
    assert shown == read[0] == ROWS
    assert screen.first_text.startswith("session 1")
    assert screen.read_at_first_write is not None and screen.read_at_first_write <= 30
    lines = screen.getvalue().splitlines()
    assert lines[1].split()[:2] == ["#", "log"]
    assert len(lines) == ROWS + 2


@pytest.mark.parametrize("columns", [80, 200])
def test_streamed_lines_fit_and_line_up(big_db: Path, columns: int) -> None:
    env = dict(WIDE_ENV, COLUMNS=str(columns), LINES="30")
    result = CliRunner().invoke(app, ["--db", str(big_db), "logs", "1"], env=env)
    assert result.exit_code == 0, result.output
    title, header, *rows = result.stdout.splitlines()
    assert title == "session 1" and "┃" not in result.stdout
    assert len(rows) == ROWS
    assert max(len(line) for line in rows + [header]) <= columns
    # The status column starts at the same place on every line, the 10,000th included.
    at = header.index("status")
    statuses = {row[at:].split()[0] for row in rows}
    assert statuses <= {"completed", "skipped", "failed"}
    assert rows[-1].split()[0] == str(ROWS)
    assert "compl…" not in result.stdout
    assert ("duration" in header) is (columns == 200)


def test_later_rows_wider_than_the_first_screen(tmp_path: Path) -> None:
    db = tmp_path / "flowcli.db"
    assert CliRunner().invoke(app, ["--db", str(db), "demo"], env=WIDE_ENV).exit_code == 0
    long_error = "the provider said: " + "x" * 300
    grow_session(
        db,
        200,
        at={
            150: {"error_message": long_error, "status": "failed"},
            160: {"execution_order": 1_234_567},
        },
    )
    env = dict(WIDE_ENV, COLUMNS="120", LINES="30")
    result = CliRunner().invoke(app, ["--db", str(db), "logs", "1"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    failed = next(line for line in lines if "the provider said" in line)
    assert failed.endswith("…")  # a preview, cut at the edge of the screen
    assert any(line.lstrip().startswith("1234567 ") for line in lines)  # an order is never cut


@pytest.mark.parametrize("rows", [0, 100], ids=["boxed table", "streamed lines"])
@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_stored_emoji_codes_stay_as_text(tmp_path: Path, rows: int, terminal: bool) -> None:
    db = tmp_path / "flowcli.db"
    assert CliRunner().invoke(app, ["--db", str(db), "demo"], env=WIDE_ENV).exit_code == 0
    error = "[x] :warning: :smile:"
    if rows:
        grow_session(db, rows, at={50: {"error_message": error}})
    else:
        con = sqlite3.connect(db)
        con.execute(
            "UPDATE step_execution_logs SET error_message = ? "
            "WHERE session_id = 1 AND execution_order = 1",
            (error,),
        )
        con.commit()
        con.close()
    env: dict[str, str | None] = (
        dict(WIDE_ENV) if terminal else {**WIDE_ENV, "TTY_COMPATIBLE": None}
    )
    result = CliRunner().invoke(app, ["--db", str(db), "logs", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert error in result.stdout
    assert "⚠" not in result.stdout and "😄" not in result.stdout
    assert ("┃" in result.stdout) is (terminal and not rows)


def test_a_long_table_in_a_pipe_is_every_row_whole(big_db: Path) -> None:
    env = {**WIDE_ENV, "TTY_COMPATIBLE": None}
    result = CliRunner().invoke(app, ["--db", str(big_db), "logs", "1"], env=env)
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["#", "log", "round"]
    assert len(rows) == ROWS
    assert {len(r.split("\t")) for r in rows} == {len(header.split("\t"))}
    assert [int(r.split("\t")[0]) for r in rows] == list(range(1, ROWS + 1))
