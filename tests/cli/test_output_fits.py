"""Output that fits where it goes: tab-separated rows in a pipe, tables at 80 and 200
columns that keep whole columns rather than squeezing them, a quiet end on a closed
pipe in every output mode, a pager for long output, stderr never hard-wrapped, an
empty result said in words, and times with their zone."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from tests.conftest import EXAMPLES, WIDE_ENV, subprocess_env

PIPE_ENV: dict[str, str | None] = {**WIDE_ENV, "TTY_COMPATIBLE": None}


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("fits") / "flowcli.db"
    result = CliRunner().invoke(app, ["--db", str(db), "demo"], env=WIDE_ENV)
    assert result.exit_code == 0, result.output
    return db


def run(db: Path, *args: str, columns: int | None = None, pipe: bool = False) -> str:
    env: dict[str, str | None] = dict(PIPE_ENV if pipe else WIDE_ENV)
    if columns:
        env["COLUMNS"] = str(columns)
    result = CliRunner().invoke(app, ["--db", str(db), *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


TABLE_VIEWS = [
    ["logs", "1"],
    ["session", "list"],
    ["flow", "list"],
    ["role", "list"],
    ["logs", "stats", "1"],
    ["session", "diff", "1", "1"],
    ["db", "history"],
]


# `session diff 1 1` refuses (two different sessions): test_a_piped_diff_keeps_every_column.
@pytest.mark.parametrize("view", TABLE_VIEWS[:5] + TABLE_VIEWS[6:], ids=" ".join)
def test_a_pipe_gets_tab_separated_rows_under_a_header(demo_db: Path, view: list[str]) -> None:
    out = run(demo_db, *view, pipe=True)
    lines = out.splitlines()
    assert lines and all("\t" in line for line in lines)
    widths = {len(line.split("\t")) for line in lines}
    assert len(widths) == 1  # every row has the header's columns
    assert "…" not in out and "│" not in out


def test_a_piped_diff_keeps_every_column(tmp_path: Path) -> None:
    """`session diff 1 2 | cat` dropped whole columns; a pipe gets all twelve."""
    db = tmp_path / "flowcli.db"
    for _ in range(2):
        made = CliRunner().invoke(app, ["--db", str(db), "demo"], env=WIDE_ENV)
        assert made.exit_code == 0, made.output
    header, *rows = run(db, "session", "diff", "1", "2", pipe=True).splitlines()
    names = header.split("\t")
    assert names[1:] == [
        "round", "step", "loop",
        "A #", "A status", "A result", "A message",
        "B #", "B status", "B result", "B message",
    ]  # fmt: skip
    assert rows and all(len(r.split("\t")) == len(names) for r in rows)
    ran = [r.split("\t") for r in rows if "\tcompleted\t" in r]
    assert ran and all(cells[7] and cells[11] for cells in ran)  # both messages, whole
    assert "…" not in "\n".join(rows)


def test_logs_stats_names_the_peak_memory_once(demo_db: Path) -> None:
    """The log's memory figure is the writing process's, the same for every step: the
    table has no per-step memory column; one line under it says the peak."""
    out = run(demo_db, "logs", "stats", "1", "--no-pager", columns=120)
    assert "memory" not in out.lower()  # no per-step column
    assert out.count("peaked at") == 1 and " MB" in out


def test_the_follow_header_fits_a_120_column_terminal(demo_db: Path) -> None:
    """`logs --follow` on a finished session prints its rows and returns; its header is
    one line at 120 columns (it wrapped)."""
    lines = run(demo_db, "logs", "1", "--follow", columns=120).splitlines()
    header = lines[0]
    assert header.split()[:5] == ["#", "round", "step", "status", "result"]
    assert "error" in header and len(header) <= 120
    assert all(len(line) <= 120 for line in lines)


def test_piped_logs_are_whole(demo_db: Path) -> None:
    header, *rows = run(demo_db, "logs", "1", pipe=True).splitlines()
    assert header.split("\t")[:3] == ["#", "log", "round"]
    assert any("\tcompleted\t" in r and "answer_question" in r for r in rows)
    assert all(r.split("\t")[9].count(":") == 2 for r in rows)  # full times, not `2026-…`


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize(
    "view", [["logs", "1"], ["session", "list"], ["flow", "list"]], ids=" ".join
)
def test_tables_fit_the_terminal_without_squeezed_cells(
    demo_db: Path, view: list[str], columns: int
) -> None:
    out = run(demo_db, *view, columns=columns)
    assert max(len(line) for line in out.splitlines()) <= columns
    for word in ("completed", "finished", "Demo"):
        if word.lower() in out.lower():
            break
    else:
        pytest.fail(out)
    assert "compl…" not in out and "finis…" not in out and "2026-…" not in out


def test_narrow_terminals_drop_low_priority_columns(demo_db: Path) -> None:
    wide = run(demo_db, "logs", "1", columns=200)
    narrow = run(demo_db, "logs", "1", columns=80)
    assert "duration" in wide and "duration" not in narrow
    assert "completed" in narrow and "status" in narrow


def test_stderr_is_not_hard_wrapped(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 90)
    long_dir.mkdir()
    env = dict(WIDE_ENV, COLUMNS="40")
    result = CliRunner().invoke(app, ["--db", str(long_dir / "x.db"), "demo"], env=env)
    assert result.exit_code == 0
    assert str(long_dir / "x.db") in result.stderr or "imported" in result.stderr
    assert any(len(line) > 40 for line in result.stderr.splitlines())


def test_empty_results_say_so(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    assert CliRunner().invoke(app, ["--db", db, "db", "upgrade"], env=WIDE_ENV).exit_code == 0
    result = CliRunner().invoke(app, ["--db", db, "session", "list"], env=WIDE_ENV)
    assert result.exit_code == 0
    assert "no sessions match" in result.stderr


def test_json_times_are_utc_with_z_and_tables_name_the_zone(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = json.loads(run(demo_db, "session", "list", "--json"))
    assert sessions[0]["created_at"].endswith("Z")
    rows = json.loads(run(demo_db, "logs", "1", "--json"))
    assert rows[0]["started_at"].endswith("Z")
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        out = run(demo_db, "logs", "1", pipe=True)
        assert "started (IST)" in out.splitlines()[0]
        listed = run(demo_db, "session", "list", pipe=True)
        assert "ago" in listed or "just now" in listed
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


MODES = [
    ["logs", "1", "--csv"],
    ["logs", "1", "--jsonl"],
    ["logs", "1", "--json"],
    ["logs", "1"],
    ["logs", "timeline", "1"],
    ["session", "transcript", "1"],
    ["session", "list"],
]


@pytest.mark.parametrize("mode", MODES, ids=" ".join)
def test_a_closed_pipe_ends_quietly(demo_db: Path, mode: list[str]) -> None:
    cmd = " ".join([sys.executable, "-m", "flowcli", "--db", str(demo_db), *mode])
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {cmd} | head -c 1 >/dev/null"],
        capture_output=True,
        text=True,
        env=subprocess_env(TTY_COMPATIBLE=""),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def _with_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run flowcli with stdout on a pseudo-terminal; return what reached the screen."""
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
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_long_output_goes_through_the_pager(demo_db: Path, tmp_path: Path) -> None:
    record = tmp_path / "paged.txt"
    pager = (
        f"{sys.executable} -c \"import sys; open({str(record)!r}, 'w').write(sys.stdin.read())\""
    )
    base = subprocess_env(LINES="5", COLUMNS="120", FLOWCLI_PAGER=pager)
    base.pop("TTY_COMPATIBLE")
    cmd = [sys.executable, "-m", "flowcli", "--db", str(demo_db), "logs", "1"]
    _with_terminal(cmd, base)
    assert "answer_question" in record.read_text()
    record.unlink()
    screen = _with_terminal([*cmd[:-2], "--no-pager", "logs", "1"], base)
    assert not record.exists() and "answer_question" in screen
    short = _with_terminal([*cmd[:-2], "session", "show", "1"], dict(base, LINES="200"))
    assert not record.exists() and "finished" in short  # it fits: no pager


def test_large_logs_stream_as_aligned_lines(tmp_path: Path) -> None:
    from flowcli.render.tables import STREAM_AFTER

    db = tmp_path / "big.db"
    flow = tmp_path / "big.yaml"
    flow.write_text((EXAMPLES / "demo.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["--db", str(db), "demo"], env=WIDE_ENV).exit_code == 0
    from tests.helpers import run_sql

    (template,) = run_sql(db, "SELECT * FROM step_execution_logs WHERE id = 1")
    columns = [c for c in template if c != "id"]
    for n in range(STREAM_AFTER + 50):
        values = dict(template, execution_order=100 + n)
        run_sql(
            db,
            f"INSERT INTO step_execution_logs ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})",
            **{c: values[c] for c in columns},
        )
    out = run(db, "logs", "1", columns=120)
    lines = out.splitlines()
    assert sum(1 for line in lines if line.lstrip().startswith("#")) == 1  # one header
    assert len(lines) >= STREAM_AFTER + 50
    assert "┃" not in out  # aligned lines, not a table built in memory
    assert max(len(line) for line in lines) <= 120
