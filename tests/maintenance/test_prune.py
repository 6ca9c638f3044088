"""`db prune`: what it selects, what it deletes (exactly a session's rows), its archive,
its confirmations and its errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import import_flow

BACKENDS = ("sqlite", "postgres")
SESSION_TABLES = ("step_execution_logs", "messages", "session_roles")
UNTOUCHED_TABLES = ("roles", "flow_templates", "flow_steps")


def _create(cli: Cli, flow_id: int) -> int:
    return int(cli.json("session", "create", "--flow", str(flow_id))["id"])


def _statuses(cli: Cli) -> dict[str, int]:
    """One session in each status a database holds; finished ones have run 9 steps."""
    flow = import_flow(cli, LOOP_FLOW)
    ids = {}
    for name in ("finished", "finished2", "failed", "cancelled", "running", "paused", "new"):
        ids[name] = _create(cli, flow)
    for name in ("finished", "finished2", "failed"):
        cli.ok("auto", str(ids[name]), "--quiet")
    cli.sql("UPDATE sessions SET status = 'failed' WHERE id = :id", id=ids["failed"])
    cli.ok("session", "cancel", str(ids["cancelled"]))
    cli.ok("run-next", str(ids["running"]))
    cli.ok("run-next", str(ids["paused"]))
    cli.ok("session", "pause", str(ids["paused"]))
    return ids


def _counts(cli: Cli, sid: int) -> dict[str, int]:
    out = {
        t: cli.sql(f"SELECT count(*) AS n FROM {t} WHERE session_id = :s", s=sid)[0]["n"]
        for t in SESSION_TABLES
    }
    out["sessions"] = cli.sql("SELECT count(*) AS n FROM sessions WHERE id = :s", s=sid)[0]["n"]
    return out


def _table_counts(cli: Cli, tables: tuple[str, ...] = UNTOUCHED_TABLES) -> dict[str, int]:
    return {t: cli.sql(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}


def _session_ids(cli: Cli) -> set[int]:
    return {r["id"] for r in cli.sql("SELECT id FROM sessions")}


def test_dry_run_reports_the_ended_sessions_and_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    ids = _statuses(cli)
    before = {sid: _counts(cli, sid) for sid in ids.values()}
    archive = tmp_path / "a.jsonl.gz"
    plan = cli.json("db", "prune", "--older-than", "0s", "--dry-run", "--archive", str(archive))
    ended = {ids["finished"], ids["finished2"], ids["failed"], ids["cancelled"]}
    assert {s["id"] for s in plan["sessions"]} == ended
    assert plan["session_count"] == 4 and plan["mode"] == "sessions"
    assert plan["rows"] == {
        "sessions": 4,
        "session_roles": sum(before[s]["session_roles"] for s in ended),
        "messages": sum(before[s]["messages"] for s in ended),
        "step_execution_logs": sum(before[s]["step_execution_logs"] for s in ended),
    }
    assert plan["rows"]["step_execution_logs"] == 27 and plan["estimated_bytes"] > 10_000
    assert plan["archive"] == str(archive)
    assert {sid: _counts(cli, sid) for sid in ids.values()} == before
    assert not archive.exists()
    table = cli.ok("db", "prune", "--older-than", "0s", "--dry-run")
    assert "would remove 4 sessions" in table.stdout and "nothing was changed" in table.stderr


def test_prune_removes_exactly_each_sessions_rows_after_archiving(cli: Cli, tmp_path: Path) -> None:
    ids = _statuses(cli)
    before = {sid: _counts(cli, sid) for sid in ids.values()}
    others_before = _table_counts(cli)
    archive = tmp_path / "a.jsonl.gz"
    report = cli.json(
        "db", "prune", "--older-than", "0s", "--yes", "--archive", str(archive), "--batch", "20"
    )
    ended = [ids["finished"], ids["finished2"], ids["failed"], ids["cancelled"]]
    assert sorted(report["pruned_sessions"]) == sorted(ended)
    assert report["rows"]["step_execution_logs"] == 27 and report["kept"] == []
    assert report["batches"] >= 2  # 20 rows a batch: these sessions do not fit in one
    for sid in ended:
        assert _counts(cli, sid) == dict.fromkeys([*SESSION_TABLES, "sessions"], 0)
    for name in ("running", "paused", "new"):
        assert _counts(cli, ids[name]) == before[ids[name]]
    # Nothing of the roles, flows or steps: only what MRC's own session delete removes.
    assert _table_counts(cli) == others_before
    verified = cli.json("db", "restore-archive", str(archive), "--dry-run")["archive"]
    assert verified["complete"] is True and verified["sessions"] == 4
    assert verified["rows"] == {
        "sessions": 4,
        **{t: sum(before[s][t] for s in ended) for t in SESSION_TABLES},
    }
    assert verified["manifest"]["sha256"] == report["manifest"]["sha256"]


def test_running_and_paused_sessions_are_taken_only_by_id(cli: Cli) -> None:
    ids = _statuses(cli)
    for status in ("running", "paused"):
        result = cli("db", "prune", "--status", status, "--yes")
        assert result.exit_code == 2
        assert "only when named by id" in result.stderr
    report = cli.json("db", "prune", str(ids["running"]), str(ids["paused"]), "--yes")
    assert sorted(report["pruned_sessions"]) == sorted([ids["running"], ids["paused"]])
    assert ids["new"] in _session_ids(cli)


def test_a_session_whose_step_is_running_is_refused_even_by_id(cli: Cli) -> None:
    ids = _statuses(cli)
    cli.sql(
        "UPDATE sessions SET lease_owner = 'host:1', lease_expires_at = :t WHERE id = :id",
        t=datetime.utcnow() + timedelta(minutes=5),
        id=ids["running"],
    )
    before = _counts(cli, ids["running"])
    result = cli("db", "prune", str(ids["running"]), str(ids["finished"]), "--yes")
    assert result.exit_code == 1
    assert "running a step right now" in result.stderr and "nothing was pruned" in result.stderr
    assert _counts(cli, ids["running"]) == before
    assert ids["finished"] in _session_ids(cli)


def _ended_days_ago(cli: Cli, sid: int, days: float) -> None:
    cli.sql(
        "UPDATE sessions SET ended_at = :t WHERE id = :id",
        t=datetime.utcnow() - timedelta(days=days),
        id=sid,
    )


def _planned(cli: Cli, *args: str) -> list[int]:
    return [s["id"] for s in cli.json("db", "prune", *args, "--dry-run")["sessions"]]


def test_older_than_keep_last_status_and_flow_select_as_documented(cli: Cli) -> None:
    flow_a = import_flow(cli, LOOP_FLOW)
    flow_b = import_flow(cli, LOOP_FLOW.replace("name: loop", "name: other"))
    a = [_create(cli, flow_a) for _ in range(4)]
    b = [_create(cli, flow_b) for _ in range(2)]
    for sid, days in zip([*a, *b], [40, 30, 20, 1, 50, 2], strict=True):
        cli.ok("session", "cancel", str(sid))
        _ended_days_ago(cli, sid, days)
    cli.sql("UPDATE sessions SET status = 'finished' WHERE id = :id", id=a[1])
    # Oldest end first.
    assert _planned(cli, "--older-than", "10d") == [b[0], a[0], a[1], a[2]]
    assert _planned(cli, "--older-than", "25d", "--flow", str(flow_a)) == [a[0], a[1]]
    assert _planned(cli, "--older-than", "10d", "--status", "finished") == [a[1]]
    # --keep-last protects each flow's newest N whatever their age, then --older-than.
    assert _planned(cli, "--keep-last", "2") == [a[0], a[1]]
    assert _planned(cli, "--keep-last", "1", "--older-than", "25d") == [b[0], a[0], a[1]]
    assert _planned(cli, "--keep-last", "0", "--flow", str(flow_b)) == b
    # An MRC forced stop ('terminated') has ended too.
    cli.sql("UPDATE sessions SET status = 'terminated' WHERE id = :id", id=a[3])
    assert a[3] in _planned(cli, "--older-than", "0s")


def test_without_a_terminal_prune_needs_yes(cli: Cli, tmp_path: Path) -> None:
    ids = _statuses(cli)
    archive = tmp_path / "a.jsonl.gz"
    result = cli("db", "prune", "--older-than", "0s", "--archive", str(archive))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: db prune would delete 4 session(s)")
    assert "pass --yes" in result.stderr and result.stderr.count("\n") == 1
    assert ids["finished"] in _session_ids(cli) and not archive.exists()


def test_no_archive_warns_and_writes_no_archive(cli: Cli, tmp_path: Path, monkeypatch) -> None:
    ids = _statuses(cli)
    monkeypatch.chdir(tmp_path)
    result = cli.ok("db", "prune", str(ids["finished"]), "--no-archive", "--yes")
    assert "Warning: --no-archive" in result.stderr and "cannot be restored" in result.stderr
    assert ids["finished"] not in _session_ids(cli)
    assert not any(p.name.endswith(".archive") for p in tmp_path.iterdir())


def test_default_archive_is_beside_the_database(cli: Cli, tmp_path: Path, monkeypatch) -> None:
    ids = _statuses(cli)
    monkeypatch.chdir(tmp_path)
    report = cli.json("db", "prune", str(ids["finished"]), "--yes")
    archive = Path(report["archive"])
    if cli.backend == "sqlite":
        assert archive.parent == Path(f"{cli.db}.archive")
    else:
        assert archive.parent.parent == tmp_path and archive.parent.name.endswith(".archive")
    assert archive.name.endswith(".jsonl.gz") and archive.is_file()
    # A folder given to --archive gets a timestamped file inside it.
    folder = tmp_path / "keep"
    folder.mkdir()
    report = cli.json("db", "prune", str(ids["finished2"]), "--yes", "--archive", str(folder))
    assert Path(report["archive"]).parent == folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say what to prune"),
        (("1", "--older-than", "1d"), "not both"),
        (("--older-than", "soon"), "is not a duration"),
        (("--older-than", "99999999w"), "longer than 100 years"),
        (("--status", "exploded"), "unknown status 'exploded'"),
        (("--older-than", "1d", "--archive", "x", "--no-archive"), "not both"),
        (("--policy",), "no [retention]"),
    ],
)
def test_usage_errors_change_nothing(
    cli: Cli, args: tuple[str, ...], message: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    sid = _create(cli, import_flow(cli, LOOP_FLOW))
    cli.ok("session", "cancel", str(sid))
    result = cli("db", "prune", *args, "--yes")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert sid in _session_ids(cli)


def test_an_unknown_id_prunes_nothing(cli: Cli) -> None:
    ids = _statuses(cli)
    result = cli("db", "prune", str(ids["finished"]), "999", "--yes")
    assert result.exit_code == 1
    assert "session 999 does not exist; nothing was pruned" in result.stderr
    assert ids["finished"] in _session_ids(cli)


def _stats(cli: Cli, sid: int) -> dict[str, Any]:
    return cli.json("logs", "stats", str(sid))


def test_logs_only_keeps_sessions_and_messages_and_stats_still_answer(
    cli: Cli, tmp_path: Path
) -> None:
    ids = _statuses(cli)
    before = {sid: _counts(cli, sid) for sid in ids.values()}
    stats_before = _stats(cli, ids["finished"])
    report = cli.json(
        "db",
        "prune",
        "--older-than",
        "0s",
        "--logs-only",
        "--yes",
        "--archive",
        str(tmp_path / "l.gz"),
    )
    assert report["mode"] == "logs-only" and report["rows"]["sessions"] == 0
    assert report["rows"]["step_execution_logs"] == 27
    for name in ("finished", "finished2", "failed"):
        after = _counts(cli, ids[name])
        assert after == {**before[ids[name]], "step_execution_logs": 0}
    stats_after = _stats(cli, ids["finished"])
    assert stats_after["pruned"]["executions"] == 9
    assert stats_after["total"] == stats_before["total"]
    strip = ("p50_ms", "p95_ms", "max_ms")
    assert [{k: v for k, v in s.items() if k not in strip} for s in stats_after["steps"]] == [
        {k: v for k, v in s.items() if k not in strip} for s in stats_before["steps"]
    ]
    assert [s["max_ms"] for s in stats_after["steps"]] == [
        s["max_ms"] for s in stats_before["steps"]
    ]
    # A second --logs-only prune finds nothing left to drop.
    again = cli.json("db", "prune", "--older-than", "0s", "--logs-only", "--dry-run")
    assert again["session_count"] == 0


def test_batch_of_one_row_still_takes_whole_sessions(cli: Cli, tmp_path: Path) -> None:
    ids = _statuses(cli)
    report = cli.json(
        "db",
        "prune",
        "--older-than",
        "0s",
        "--batch",
        "1",
        "--yes",
        "--archive",
        str(tmp_path / "b.gz"),
    )
    assert report["batches"] == report["session_count"] == 4
    summary = cli.json("db", "restore-archive", str(tmp_path / "b.gz"), "--dry-run")["archive"]
    assert summary["batches"] == 4
    for sid in (ids["finished"], ids["failed"]):
        assert _counts(cli, sid)["sessions"] == 0


@pytest.mark.sqlite_only
def test_a_session_another_session_points_at_is_kept(cli: Cli, tmp_path: Path) -> None:
    """Pointers across sessions are never written by flowcli or MRC; if one exists, the
    session it points into is archived but kept, and the prune says why."""
    ids = _statuses(cli)
    target = cli.sql(
        "SELECT id FROM messages WHERE session_id = :s ORDER BY id LIMIT 1", s=ids["finished"]
    )[0]["id"]
    cli.sql(
        "UPDATE messages SET reply_to_message_id = :t WHERE id = "
        "(SELECT min(id) FROM messages WHERE session_id = :o)",
        t=target,
        o=ids["running"],
    )
    report = cli.json(
        "db",
        "prune",
        str(ids["finished"]),
        str(ids["finished2"]),
        "--yes",
        "--archive",
        str(tmp_path / "k.gz"),
    )
    assert report["pruned_sessions"] == [ids["finished2"]]
    assert report["kept"] == [
        {"id": ids["finished"], "reason": f"rows of session {ids['running']} point at its rows"}
    ]
    assert _counts(cli, ids["finished"])["messages"] == 9


@pytest.mark.sqlite_only
def test_on_a_terminal_prune_asks_first(cli: Cli, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    ids = _statuses(cli)

    def run(answer: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowcli",
                "--db",
                str(cli.db),
                "db",
                "prune",
                str(ids["finished"]),
            ],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=subprocess_env(),
            cwd=tmp_path,
        )
        os.close(follower)
        seen = b""
        while b"[y/N]" not in seen:
            chunk = os.read(leader, 4096)
            assert chunk, seen
            seen += chunk
        os.write(leader, answer.encode() + b"\n")
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        return proc.wait(timeout=120), seen.decode("utf-8", "replace")

    code, text = run("n")
    assert code == 1 and "Prune 1 session(s) (9 log rows, 9 messages)" in text
    assert ids["finished"] in _session_ids(cli)
    code, text = run("y")
    assert code == 0, text
    assert "pruned 1 session(s)" in text
    assert "pruning" in text and "1/1 sessions" in text  # the progress display
    assert ids["finished"] not in _session_ids(cli)


def test_prune_json_is_one_document(cli: Cli, tmp_path: Path) -> None:
    ids = _statuses(cli)
    out = cli.ok(
        "db", "prune", str(ids["finished"]), "--yes", "--json", "--archive", str(tmp_path / "j.gz")
    ).stdout
    data = json.loads(out)
    assert data["session_count"] == 1 and Path(data["archive"]).is_file()
