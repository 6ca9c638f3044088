"""Step logs and debugging (issue 6): views, exports, follow, show, stats, timeline,
transcript, fork, retry, skip, diff, and the --last query plan.

Most tests share one database built once per module: session 1 fails at its last step
(16 executions: loops, a skipped step, two rounds, a failure) and session 2 is the same
flow with ``ok`` set, so it finishes. Each test gets its own copy of that file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowcli.db.log_math import dict_diff, flatten, percentile
from flowcli.db.log_queries import LOG_COLUMNS
from flowcli.db.tables import STEP_LOG_COLUMNS
from flowcli.render.logs import looks_like_markdown
from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env
from tests.helpers import ROLES, import_flow, logs, messages, session_row, step_orders

FLOW = (
    ROLES
    + """
name: debugging
termination_config: {max_rounds: 2}
responder:
  type: template
  template: "{% if step == 4 and round == 2 and 'ok' not in vars %}{{ vars.missing }}\\
    {% else %}**{{ speaker }}** (round {{ round }}, step {{ step }}, loop {{ loop_iteration }})\\
    {{ ' ' ~ vars.tone if 'tone' in vars else '' }}\\n\\n- {{ task_type }}{% endif %}"
steps:
  - {speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: last_message
    logic_config: {next_step_order: 1, max_loops: 2}
  - speaker_role_ref: C
    task_type: comment
    context_scope: none
    logic_config: {condition: "round >= 2"}
  - {speaker_role_ref: A, task_type: summarize, context_scope: all}
"""
)
FAILED, FINISHED = 1, 2
ORDERS = [1, 2, 1, 2, 1, 2, 3, 4] * 2
ITERATIONS = [0, 0, 1, 1, 2, 2, 0, 0] * 2


BACKENDS = ("sqlite", "postgres")


def build_scenario(cli: Cli) -> None:
    flow_id = import_flow(cli, FLOW)
    assert cli.json("session", "create", "--flow", str(flow_id))["id"] == FAILED
    assert cli("auto", str(FAILED), "--quiet").exit_code == 1
    assert cli.json("session", "create", "--flow", str(flow_id), "--var", "ok=1")["id"] == FINISHED
    cli.ok("auto", str(FINISHED), "--quiet")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("built") / "flowcli.db"
    build_scenario(Cli(CliRunner(), path))
    return path


@pytest.fixture
def cli(runner: CliRunner, backend: str, request: pytest.FixtureRequest) -> Cli:
    if backend == "postgres":
        pg = Cli(runner, request.getfixturevalue("pg_url"))
        build_scenario(pg)
        return pg
    built, db_path = request.getfixturevalue("built"), request.getfixturevalue("db_path")
    # The backup API copies what the WAL holds too.
    src, dst = sqlite3.connect(built), sqlite3.connect(db_path)
    src.backup(dst)
    src.close()
    dst.close()
    return Cli(runner, db_path)


def log_id(cli: Cli, session_id: int, execution_order: int) -> int:
    return int(logs(cli.db, session_id)[execution_order - 1]["id"])


def fail(cli: Cli, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    return result.stderr.strip()


# --- the scenario itself -------------------------------------------------------------


def test_scenario_has_loops_skips_a_failure_and_two_rounds(cli: Cli) -> None:
    rows = logs(cli.db, FAILED)
    assert step_orders(rows) == ORDERS
    assert [r["loop_iteration"] for r in rows] == ITERATIONS
    assert [r["status"] for r in rows].count("skipped") == 1
    assert rows[-1]["status"] == "failed"
    assert session_row(cli.db, FAILED)["status"] == "failed"
    assert session_row(cli.db, FINISHED)["status"] == "finished"


# --- logs list: filters, tree, exports ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected_orders"),
    [
        ([], list(range(1, 17))),
        (["--status", "skipped"], [7]),
        (["--failed"], [16]),
        (["--status", "skipped", "--status", "failed"], [7, 16]),
        (["--step", "3"], [7, 15]),
        (["--round", "2"], list(range(9, 17))),
        (["--last", "3"], [14, 15, 16]),
        (["--last", "2", "--status", "completed"], [14, 15]),
        (["--last", "50"], list(range(1, 17))),
        (["--limit", "3", "--offset", "2"], [3, 4, 5]),
        (["--since", "2999-01-01T00:00:00"], []),
        (["--session", str(FAILED), "--round", "1", "--step", "2"], [2, 4, 6]),
    ],
)
def test_list_filters(cli: Cli, args: list[str], expected_orders: list[int]) -> None:
    positional = [] if "--session" in args else [str(FAILED)]
    data = cli.json("logs", *positional, *args)
    assert [r["execution_order"] for r in data] == expected_orders


def test_table_shows_columns_and_wrapped_error(cli: Cli) -> None:
    out = cli.ok("logs", str(FAILED)).stdout
    for header in ("#", "round", "loop", "try", "step", "status", "result", "duration", "error"):
        assert header in out
    assert "2 B answer_question" in out and "loop_break" in out
    failed_line = next(line for line in out.splitlines() if "failed" in line)
    # The error wraps within its column (the whole message is there), it is not cut.
    assert "template responder" in failed_line
    assert "…" not in out


def test_tree_nests_repeats_under_their_first_pass(cli: Cli) -> None:
    out = cli.ok("logs", str(FAILED), "--tree").stdout
    lines = out.splitlines()

    def line_of(marker: str) -> str:
        return next(line for line in lines if marker in line)

    first_a, repeat_a = line_of("#1 1 A"), line_of("#3 1 A")
    assert repeat_a.index("#3") > first_a.index("#1")  # nested one level deeper
    assert lines.index(repeat_a) > lines.index(first_a)
    assert line_of("#7 3 C").index("#7") == first_a.index("#1")  # a first pass: top level
    assert "condition_false" in line_of("#7 3 C")
    assert "template responder" in line_of("#16 4 A")


def test_json_has_all_twenty_columns_and_id(cli: Cli) -> None:
    data = cli.json("logs", str(FAILED))
    assert len(STEP_LOG_COLUMNS) == 20
    assert all(list(row) == ["id", *STEP_LOG_COLUMNS] for row in data)
    assert data[1]["result_type"] == "loop_continue"


def test_jsonl_and_csv_exports(cli: Cli) -> None:
    lines = cli.ok("logs", str(FAILED), "--jsonl").stdout.splitlines()
    assert len(lines) == 16
    assert [json.loads(line)["execution_order"] for line in lines] == list(range(1, 17))
    rows = list(csv.reader(io.StringIO(cli.ok("logs", str(FAILED), "--csv").stdout)))
    assert tuple(rows[0]) == LOG_COLUMNS
    assert len(rows) == 17
    as_dicts = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert as_dicts[15]["status"] == "failed" and as_dicts[0]["parent_log_id"] == ""


@pytest.mark.parametrize(
    "args",
    [["--json", "--csv"], ["--tree", "--jsonl"], ["--follow", "--json"], ["--follow", "--tree"]],
)
def test_conflicting_output_options(cli: Cli, args: list[str]) -> None:
    result = cli("logs", str(FAILED), *args)
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")


def _add_synthetic_logs(db: Path, session_id: int, n: int) -> None:
    con = sqlite3.connect(db)
    snapshot = json.dumps({"order": 1, "speaker_role_ref": "A", "pad": "x" * 400})
    con.executemany(
        "INSERT INTO step_execution_logs (session_id, step_id, execution_order, round_index,"
        " loop_iteration, attempt_count, status, result_type, step_snapshot, context_snapshot)"
        " VALUES (?, 1, ?, 1, 0, 1, 'completed', 'success', ?, ?)",
        ((session_id, i, snapshot, snapshot) for i in range(1, n + 1)),
    )
    con.commit()
    con.close()


@pytest.mark.sqlite_only  # SQLite mechanics: raw sqlite3 writes / query plans
@pytest.mark.parametrize("export", ["stream_json_array", "stream_jsonl", "stream_csv"])
def test_exports_stream_with_flat_memory(
    cli: Cli, export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import tracemalloc

    from flowcli.db.connection import Database, resolve_target
    from flowcli.db.log_queries import iter_logs
    from flowcli.render import log_table

    flow_id = import_flow(cli, FLOW)
    small, large = (cli.json("session", "create", "--flow", str(flow_id))["id"] for _ in range(2))
    _add_synthetic_logs(cli.db, small, 600)
    _add_synthetic_logs(cli.db, large, 4_000)

    class Counting(io.TextIOBase):
        chars = 0

        def write(self, text: str) -> int:
            self.chars += len(text)
            return len(text)

    db = Database(resolve_target(str(cli.db)))

    def run(session_id: int) -> tuple[int, int]:
        """(peak bytes allocated, characters written) for one export."""
        out = Counting()
        monkeypatch.setattr(sys, "stdout", out)
        tracemalloc.start()
        with db.read() as conn:
            getattr(log_table, export)(iter_logs(conn, session_id))
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes, out.chars

    run(small)  # warm caches (statement compilation, imports)
    small_peak, small_chars = run(small)
    large_peak, large_chars = run(large)
    db.dispose()
    assert large_chars > 6 * small_chars  # 6.7 times the rows were written…
    assert large_peak < 3 * small_peak  # …without holding them


# --- logs --follow ---------------------------------------------------------------------


def _start_follower(db: Path, session_id: int, *mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *flowcli_subprocess_cmd(),
            "--db",
            str(db),
            "logs",
            str(session_id),
            "--follow",
            "--interval",
            "0.1",
            *mode,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        bufsize=0,
    )


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 30.0) -> bytes:
    """Raw reads from the follower's stdout until ``needle`` appears (no Python buffering)."""
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"follower printed no {needle!r}: {data!r}"
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"follower exited early: {data!r} {proc.stderr.read()!r}"  # type: ignore[union-attr]
            data += chunk
    return data


@pytest.mark.parametrize("mode", [["--jsonl"], []], ids=["jsonl", "table"])
def test_follow_prints_every_execution_written_by_another_process(
    cli: Cli, mode: list[str]
) -> None:
    sid = cli.json("session", "create", "--flow", "1", "--var", "ok=1")["id"]
    cli.ok("run-next", str(sid))  # one row exists before following starts
    follower = _start_follower(cli.db, sid, *mode)
    try:
        first = _read_until(follower, b'"execution_order": 1,' if mode else b"ask_question")
        writer = subprocess.run(
            [*flowcli_subprocess_cmd(), "--db", str(cli.db), "auto", str(sid), "--quiet"],
            env=subprocess_env(),
            capture_output=True,
            timeout=60,
        )
        assert writer.returncode == 0, writer.stderr
        rest, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    out = (first + rest).decode()
    if mode:
        printed = [json.loads(line)["execution_order"] for line in out.splitlines()]
    else:
        printed = [int(line.split()[0]) for line in out.splitlines()[1:]]
        assert out.splitlines()[0].split()[:4] == ["#", "round", "loop", "try"]
    assert printed == list(range(1, 17))
    assert session_row(cli.db, sid)["status"] == "finished"


def test_follow_stops_at_once_for_an_ended_session_and_filters(cli: Cli) -> None:
    data = cli.ok("logs", str(FAILED), "--follow", "--jsonl", "--status", "skipped").stdout
    assert [json.loads(line)["execution_order"] for line in data.splitlines()] == [7]


@pytest.mark.sqlite_only  # SQLite mechanics: raw sqlite3 writes / query plans
def test_follow_waits_for_a_claimed_step_to_end(cli: Cli) -> None:
    from flowcli.db.connection import Database, resolve_target
    from flowcli.db.log_follow import follow_logs

    sid = cli.json("session", "create", "--flow", "1", "--var", "ok=1")["id"]
    cli.ok("run-next", str(sid))
    con = sqlite3.connect(cli.db, isolation_level=None)
    insert = (
        "INSERT INTO step_execution_logs (session_id, step_id, execution_order, status)"
        " VALUES (?, 2, ?, ?)"
    )
    con.execute(insert, (sid, 2, "running"))  # a network step in flight
    writes = [
        lambda: con.execute(
            "UPDATE step_execution_logs SET status = 'completed' WHERE session_id = ? "
            "AND execution_order = 2",
            (sid,),
        ),
        lambda: con.executescript(
            f"BEGIN; INSERT INTO step_execution_logs (session_id, step_id, execution_order,"
            f" status) VALUES ({sid}, 1, 3, 'failed');"
            f" UPDATE sessions SET status = 'failed' WHERE id = {sid}; COMMIT;"
        ),
    ]
    polls: list[int] = []

    def sleep(seconds: float) -> None:
        polls.append(len(polls))
        writes[len(polls) - 1]()

    db = Database(resolve_target(str(cli.db)))
    rows = [(r["execution_order"], r["status"]) for r in follow_logs(db, sid, sleep=sleep)]
    db.dispose()
    con.close()
    assert rows == [(1, "completed"), (2, "completed"), (3, "failed")]
    assert len(polls) == 2


def test_follow_ctrl_c_exits_130_without_traceback(cli: Cli) -> None:
    sid = cli.json("session", "create", "--flow", "1")["id"]
    cli.ok("run-next", str(sid))
    follower = _start_follower(cli.db, sid)
    try:
        _read_until(follower, b"ask_question")
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 130, err
    assert b"Traceback" not in err and b"stopped following" in err


# --- logs show / log ---------------------------------------------------------------------


def test_show_json_has_every_column_and_the_context_diff(cli: Cli) -> None:
    third = log_id(cli, FAILED, 3)  # step 1's first repeat; the previous one is step 2
    data = cli.json("logs", "show", str(third))
    assert set(LOG_COLUMNS) <= set(data)
    assert data["previous_log_id"] == log_id(cli, FAILED, 2)
    assert data["result_data"]["message_id"] == data["message"]["id"]
    assert data["step_snapshot"]["order"] == 1
    diff = data["context_diff"]
    assert set(diff) == {"added", "removed", "changed"}
    assert diff["changed"]["step_order"] == [2, 1]
    assert diff["changed"]["loop_iteration"] == [0, 1]
    assert diff["changed"]["loops.2.jumps"] == [0, 1]
    assert diff["added"] == {"loops.2.first_logs.2": log_id(cli, FAILED, 2)}
    assert diff["removed"] == {}
    assert cli.json("log", str(third)) == data  # the top-level alias


def test_show_first_execution_diffs_against_nothing(cli: Cli) -> None:
    data = cli.json("log", str(log_id(cli, FAILED, 1)))
    assert data["previous_log_id"] is None
    assert data["context_diff"]["added"]["round"] == 1
    assert data["context_diff"]["changed"] == {}


def test_show_renders_columns_json_and_diff(cli: Cli) -> None:
    out = cli.ok("log", str(log_id(cli, FAILED, 16))).stdout
    for text in ("error_message", "result_data", "step_snapshot", "context_snapshot"):
        assert text in out
    assert "'dict object' has no attribute 'missing'" in out
    assert f"context compared with log {log_id(cli, FAILED, 15)}" in out
    assert '"final": true' in out


# --- stats and timeline -----------------------------------------------------------------


def test_stats_per_step(cli: Cli) -> None:
    data = cli.json("logs", "stats", str(FAILED))
    by_order = {s["order"]: s for s in data["steps"]}
    assert [s["order"] for s in data["steps"]] == [1, 2, 3, 4]
    assert (by_order[1]["runs"], by_order[1]["skips"], by_order[1]["failures"]) == (6, 0, 0)
    assert (by_order[3]["runs"], by_order[3]["skips"]) == (1, 1)
    assert (by_order[4]["runs"], by_order[4]["failures"]) == (1, 1)
    assert by_order[2]["speaker"] == "B" and by_order[2]["task_type"] == "answer_question"
    for s in data["steps"]:
        assert s["p50_ms"] <= s["p95_ms"] <= s["max_ms"]
        assert s["max_memory_mb"] > 0
    assert data["total"] == {"executions": 16, "runs": 14, "skips": 1, "failures": 1}
    out = cli.ok("logs", "stats", str(FAILED)).stdout
    assert "p95" in out and "answer_question" in out


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50, 95)
    assert percentile([7], 0.95) == 7 and percentile([], 0.5) is None


def test_timeline(cli: Cli) -> None:
    data = cli.json("logs", "timeline", str(FAILED))
    rows = data["rows"]
    assert [r["execution_order"] for r in rows] == list(range(1, 17))
    assert all(
        0.0 <= r["offset"] <= 1.0 and 0.0 <= r["offset"] + r["length"] <= 1.000001 for r in rows
    )
    assert [r["offset_ms"] for r in rows] == sorted(r["offset_ms"] for r in rows)
    assert rows[0]["offset"] == 0.0 and data["span_ms"] >= rows[-1]["end_ms"]
    out = cli.ok("logs", "timeline", str(FAILED)).stdout
    failed_line = next(line for line in out.splitlines() if line.startswith("#16 "))
    assert "✗" in failed_line and "r2" in failed_line
    assert next(line for line in out.splitlines() if line.startswith("#3 ")).startswith(
        "#3 r1 L1 1.A"
    )
    assert [
        r["execution_order"] for r in cli.json("logs", "timeline", "1", "--last", "2")["rows"]
    ] == [15, 16]


# --- transcript ---------------------------------------------------------------------------


def test_transcript_json(cli: Cli) -> None:
    data = cli.json("session", "transcript", str(FINISHED))
    assert len(data) == len(messages(cli.db, FINISHED)) == 15
    assert list(data[0]) == ["id", "round", "speaker", "target", "section", "content", "created_at"]
    assert (data[0]["speaker"], data[0]["target"], data[0]["section"]) == ("A", "B", "ask_question")
    assert [m["round"] for m in data] == [1] * 7 + [2] * 8


def test_transcript_panels_by_round_with_markdown(cli: Cli) -> None:
    out = cli.ok("session", "transcript", str(FINISHED)).stdout
    assert out.index("round 1") < out.index("round 2")
    assert "A → B · ask_question" in out
    assert "**A**" not in out and "A (round 1, step 1, loop 0)" in out  # Markdown rendered
    assert "• ask_question" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# Title", True),
        ("- one\n- two", True),
        ("1. first", True),
        ("```python\nx = 1\n```", True),
        ("this is **bold**", True),
        ("an *emphasis* here", True),
        ("see [docs](https://x.org)", True),
        ("use `code`", True),
        ("[A → B] ask_question on the topic", False),
        ("a plain answer with snake_case words and 2 * 3 = 6", False),
    ],
)
def test_looks_like_markdown(text: str, expected: bool) -> None:
    assert looks_like_markdown(text) is expected


# --- fork ---------------------------------------------------------------------------------


def _signature(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["execution_order"],
            r["step_snapshot"]["order"],
            r["round_index"],
            r["loop_iteration"],
            r["attempt_count"],
            r["status"],
            r["result_type"],
        )
        for r in rows
    ]


@pytest.mark.parametrize("at_order", [2, 3, 4, 7, 10, 11, 13, 15])
def test_fork_then_auto_continues_exactly_like_the_original(cli: Cli, at_order: int) -> None:
    at = log_id(cli, FINISHED, at_order)
    fork_id = cli.json("session", "fork", str(FINISHED), "--at", str(at))["id"]
    row = session_row(cli.db, fork_id)
    assert (row["forked_from_session_id"], row["forked_from_log_id"]) == (FINISHED, at)
    assert row["status"] == "running"
    assert len(logs(cli.db, fork_id)) == at_order
    cli.ok("auto", str(fork_id), "--quiet")
    original, forked = logs(cli.db, FINISHED), logs(cli.db, fork_id)
    assert _signature(forked) == _signature(original)
    assert [m["content"] for m in messages(cli.db, fork_id)] == [
        m["content"] for m in messages(cli.db, FINISHED)
    ]
    # Every reference in the fork points into the fork.
    fork_log_ids = {r["id"] for r in forked}
    assert all(r["parent_log_id"] in fork_log_ids for r in forked if r["parent_log_id"])
    position = {r["id"]: i for i, r in enumerate(forked)}
    original_position = {r["id"]: i for i, r in enumerate(original)}
    assert [position.get(r["parent_log_id"]) for r in forked] == [
        original_position.get(r["parent_log_id"]) for r in original
    ]
    fork_messages = {m["id"] for m in messages(cli.db, fork_id)}
    for r in forked:
        if r["result_data"] and "message_id" in r["result_data"]:
            assert r["result_data"]["message_id"] in fork_messages
        assert set(r["context_snapshot"]["context"]["message_ids"]) <= fork_messages
    assert session_row(cli.db, fork_id)["status"] == "finished"


def test_fork_at_the_last_execution_is_finished(cli: Cli) -> None:
    fork_id = cli.json("session", "fork", str(FINISHED), "--at", str(log_id(cli, FINISHED, 16)))[
        "id"
    ]
    row = session_row(cli.db, fork_id)
    assert row["status"] == "finished" and row["current_step_id"] is None
    assert row["executed_steps_count"] == 16
    assert len(messages(cli.db, fork_id)) == 15


def test_fork_at_the_failure_with_a_fixed_variable(cli: Cli) -> None:
    failed_log = log_id(cli, FAILED, 16)
    result = cli.ok("session", "fork", str(FAILED), "--at", str(failed_log), "--set", "ok=true")
    fork_id = int(result.stdout.strip())
    assert "forked from session 1" in result.stderr
    row = session_row(cli.db, fork_id)
    assert row["status"] == "running" and json.loads(row["variables"]) == {"ok": True}
    assert json.loads(row["engine_state"])["failed_attempts"] == 1
    assert cli.json("explain", str(fork_id))["attempt"] == 2
    cli.ok("auto", str(fork_id), "--quiet")
    rows = logs(cli.db, fork_id)
    assert [r["status"] for r in rows[-2:]] == ["failed", "completed"]
    assert rows[-1]["attempt_count"] == 2
    assert session_row(cli.db, fork_id)["status"] == "finished"
    # The source is untouched.
    assert session_row(cli.db, FAILED)["status"] == "failed"
    assert len(logs(cli.db, FAILED)) == 16


def test_fork_errors(cli: Cli) -> None:
    assert fail(cli, "session", "fork", "99999", "--at", "1") == (
        "Error: session 99999 does not exist"
    )
    assert fail(cli, "session", "fork", "1", "--at", "99999") == "Error: log 99999 does not exist"
    other = log_id(cli, FINISHED, 1)
    result = cli("session", "fork", str(FAILED), "--at", str(other))
    assert result.exit_code == 2
    assert f"log {other} belongs to session {FINISHED}" in result.stderr
    result = cli("session", "fork", "1", "--at", "1", "--set", "novalue")
    assert result.exit_code == 2


# --- retry and skip -----------------------------------------------------------------------


def test_retry_runs_the_failed_step_again(cli: Cli) -> None:
    result = cli("session", "retry", str(FAILED))
    assert result.exit_code == 1 and "step failed again" in result.stderr
    assert "step failed" in result.stdout  # rendered like run-next
    assert [r["attempt_count"] for r in logs(cli.db, FAILED)[-2:]] == [1, 2]
    data = cli.json("session", "retry", str(FAILED), "--template", "fixed by hand")
    assert data["log"]["status"] == "completed" and data["log"]["attempt_count"] == 3
    assert data["message"]["content"] == "fixed by hand"
    assert data["session"]["status"] == "finished"


def test_retry_refuses_a_session_that_has_not_failed(cli: Cli) -> None:
    message = fail(cli, "session", "retry", str(FINISHED))
    assert message.startswith(f"Error: session {FINISHED} is finished, not failed")
    assert fail(cli, "session", "retry", "99999") == "Error: session 99999 does not exist"


def test_skip_the_failed_step(cli: Cli) -> None:
    data = cli.json("session", "skip", str(FAILED), "--reason", "not needed today")
    log = data["log"]
    assert (log["status"], log["result_type"], log["execution_order"]) == ("skipped", "skipped", 17)
    assert json.loads(log["result_data"])["reason"] == "not needed today"
    assert json.loads(log["result_data"])["skipped_by"] == "user"
    assert data["previous_status"] == "failed"
    assert data["session"]["status"] == "finished"  # it was the last step of the last round
    assert len(messages(cli.db, FAILED)) == 14  # unchanged: a skip writes no message


def test_skip_a_loop_step_moves_on_like_a_false_condition(cli: Cli) -> None:
    sid = cli.json("session", "create", "--flow", "1", "--var", "ok=1")["id"]
    cli.ok("run-next", str(sid))
    out = cli.ok("session", "skip", str(sid)).stdout
    assert "step skipped" in out and "next step in order" in out
    cli.ok("auto", str(sid), "--quiet")
    rows = logs(cli.db, sid)
    # No loop decision for the skipped loop step: round 1 goes on to steps 3 and 4.
    assert step_orders(rows) == [1, 2, 3, 4, 1, 2, 1, 2, 1, 2, 3, 4]
    assert [r["status"] for r in rows[:3]] == ["completed", "skipped", "skipped"]
    assert [r["result_type"] for r in rows[1:3]] == ["skipped", "condition_false"]


def test_skip_refuses_ended_sessions(cli: Cli) -> None:
    assert "it is finished" in fail(cli, "session", "skip", str(FINISHED))
    sid = cli.json("session", "create", "--flow", "1")["id"]
    cli.ok("session", "cancel", str(sid))
    assert "it is cancelled" in fail(cli, "session", "skip", str(sid))


# --- diff ---------------------------------------------------------------------------------


def test_diff_of_a_session_and_its_fixed_fork(cli: Cli) -> None:
    fork_id = cli.json(
        "session", "fork", str(FAILED), "--at", str(log_id(cli, FAILED, 12)), "--set", "ok=1"
    )["id"]
    cli.ok("auto", str(fork_id), "--quiet")
    data = cli.json("session", "diff", str(FAILED), str(fork_id))
    assert data["summary"] == {"same": 15, "different": 1, "only_a": 0, "only_b": 0}
    last = data["rows"][-1]
    assert (last["round"], last["step_order"], last["loop_iteration"]) == (2, 4, 0)
    assert last["marker"] == "different" and last["differences"] == [
        "status",
        "result_type",
        "content",
    ]
    assert last["a"]["attempt_count"] == 1 and last["a"]["status"] == "failed"
    assert last["b"]["status"] == "completed" and last["b"]["content"].startswith("**A**")


def test_diff_shows_content_and_missing_positions(cli: Cli) -> None:
    # A fork that changes a variable from execution 9 on and stops after execution 12.
    fork_id = cli.json(
        "session", "fork", str(FINISHED), "--at", str(log_id(cli, FINISHED, 8)), "--set", "tone=x"
    )["id"]
    cli.ok("auto", str(fork_id), "--quiet", "--max-steps", "4")
    data = cli.json("session", "diff", str(FINISHED), str(fork_id))
    assert data["summary"] == {"same": 8, "different": 4, "only_a": 4, "only_b": 0}
    changed = [r for r in data["rows"] if r["marker"] == "different"]
    assert all(r["differences"] == ["content"] for r in changed)
    assert changed[0]["b"]["content"].endswith("(round 2, step 1, loop 0) x\n\n- ask_question")
    out = cli.ok("session", "diff", str(FINISHED), str(fork_id)).stdout
    assert "≠" in out and "only A" in out and "=" in out
    reverse = cli.json("session", "diff", str(fork_id), str(FINISHED))["summary"]
    assert reverse["only_b"] == 4 and reverse["only_a"] == 0


def test_diff_aligns_extra_positions_where_they_happened(cli: Cli) -> None:
    sid = cli.json("session", "create", "--flow", "1", "--var", "ok=1")["id"]
    cli.ok("run-next", str(sid))
    cli.ok("session", "skip", str(sid))  # the loop never runs: 12 executions, not 16
    cli.ok("auto", str(sid), "--quiet")
    data = cli.json("session", "diff", str(FINISHED), str(sid))
    markers = [r["marker"] for r in data["rows"]]
    assert markers[:2] == ["same", "different"]
    assert markers[2:6] == ["only_a"] * 4  # the loop's repeats in round 1
    assert data["summary"]["only_b"] == 0 and data["summary"]["only_a"] == 4
    assert fail(cli, "session", "diff", "1", "99999") == "Error: session 99999 does not exist"


# --- unknown ids and one JSON document -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["logs", "stats", "99999"], "session 99999 does not exist"),
        (["logs", "timeline", "99999"], "session 99999 does not exist"),
        (["logs", "99999", "--follow"], "session 99999 does not exist"),
        (["logs", "99999", "--tree"], "session 99999 does not exist"),
        (["session", "transcript", "99999"], "session 99999 does not exist"),
        (["session", "skip", "99999"], "session 99999 does not exist"),
        (["logs", "show", "99999"], "log 99999 does not exist"),
        (["log", "99999"], "log 99999 does not exist"),
    ],
)
def test_unknown_ids(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {message}"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["logs", "stats", "1"],
        ["logs", "timeline", "1"],
        ["logs", "show", "1"],
        ["log", "1"],
        ["session", "transcript", "1"],
        ["session", "diff", "1", "2"],
    ],
)
def test_json_is_one_document(cli: Cli, args: list[str]) -> None:
    out = cli.ok(*args, "--json").stdout
    json.loads(out)
    assert out.endswith("\n") and out.count("\n}") + out.count("\n]") >= 1


def test_flatten_and_dict_diff() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1], "e": {}}
    assert dict_diff({"a": {"b": 1}, "x": 1}, {"a": {"b": 2}, "y": 1}) == {
        "added": {"y": 1},
        "removed": {"x": 1},
        "changed": {"a.b": [1, 2]},
    }


# --- scale: --last uses the (session_id, execution_order) index -------------------------------


@pytest.mark.sqlite_only  # SQLite mechanics: raw sqlite3 writes / query plans
def test_last_query_uses_the_session_order_index(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcli.db import connection

    statements: list[str] = []
    configure = connection.configure_sqlite

    def traced(dbapi_conn: sqlite3.Connection, *args: Any) -> None:
        # Every statement as SQLite runs it (parameters filled in), on every connection.
        configure(dbapi_conn, *args)
        dbapi_conn.set_trace_callback(
            lambda sql: statements.append(sql) if "FROM step_execution_logs" in sql else None
        )

    monkeypatch.setattr(connection, "configure_sqlite", traced)
    out = cli.ok("logs", str(FAILED), "--last", "50", "--json").stdout
    assert len(json.loads(out)) == 16
    assert len(statements) == 2  # find the boundary, then stream from it
    con = sqlite3.connect(cli.db)
    for statement in statements:
        plan = " | ".join(row[3] for row in con.execute(f"EXPLAIN QUERY PLAN {statement}"))
        assert "INDEX ux_step_logs_session_order (session_id=?" in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
    con.close()
