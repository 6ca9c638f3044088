"""Archives: a round trip restores every row exactly; ids that are taken are remapped;
a restore is idempotent; torn, damaged and hostile archives are refused or read as far
as they verify, and nothing is written from them."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.flows_fixtures import LOOP_FLOW
from tests.helpers import import_flow, write_flow

BACKENDS = ("sqlite", "postgres")
TABLES = ("sessions", "session_roles", "messages", "step_execution_logs", "roles")


def _dump(cli: Cli) -> dict[str, list[dict[str, Any]]]:
    return {t: cli.sql(f"SELECT * FROM {t} ORDER BY id") for t in TABLES}


def _run_sessions(cli: Cli, n: int, flow: int | None = None) -> list[int]:
    flow = flow or import_flow(cli, LOOP_FLOW)
    ids = []
    for _ in range(n):
        sid = int(cli.json("session", "create", "--flow", str(flow))["id"])
        cli.ok("auto", str(sid), "--quiet")
        ids.append(sid)
    return ids


def test_round_trip_restores_every_row_exactly(cli: Cli, tmp_path: Path) -> None:
    ids = _run_sessions(cli, 3)
    before = _dump(cli)
    archive = tmp_path / "rt.jsonl.gz"
    cli.ok("db", "prune", "--older-than", "0s", "--yes", "--archive", str(archive), "--batch", "30")
    assert cli.sql("SELECT count(*) AS n FROM sessions")[0]["n"] == 0
    report = cli.json("db", "restore-archive", str(archive))
    assert report["restored"] == 3 and report["restored_with_new_ids"] == 0
    assert [s["id"] for s in report["sessions"]] == ids
    assert report["rows"]["step_execution_logs"] == 27 and report["rows"]["roles"] == 0
    assert _dump(cli) == before
    # The restored sessions work like any other: read, and fork from their history.
    assert cli.json("logs", "stats", str(ids[0]))["total"]["runs"] == 9
    last = cli.sql("SELECT max(id) AS id FROM step_execution_logs WHERE session_id = :s", s=ids[0])
    cli.ok("session", "fork", str(ids[0]), "--at", str(last[0]["id"]))


def test_restoring_twice_skips_what_is_already_there(cli: Cli, tmp_path: Path) -> None:
    _run_sessions(cli, 2)
    archive = tmp_path / "twice.jsonl.gz"
    cli.ok("db", "prune", "--older-than", "0s", "--yes", "--archive", str(archive))
    cli.ok("db", "restore-archive", str(archive))
    before = _dump(cli)
    again = cli.json("db", "restore-archive", str(archive))
    assert again["skipped"] == 2 and again["restored"] == 0
    assert all("already in the database" in s["reason"] for s in again["sessions"])
    assert _dump(cli) == before


def _references_stay_inside(cli: Cli, sid: int) -> None:
    """Every id a session's rows hold points at a row of the same session."""
    roles = {r["id"] for r in cli.sql("SELECT id FROM session_roles WHERE session_id = :s", s=sid)}
    msgs = cli.sql("SELECT * FROM messages WHERE session_id = :s", s=sid)
    msg_ids = {m["id"] for m in msgs}
    for m in msgs:
        assert m["speaker_session_role_id"] in roles
        assert m["target_session_role_id"] in roles | {None}
        assert m["reply_to_message_id"] in msg_ids | {None}
    logs = cli.sql("SELECT * FROM step_execution_logs WHERE session_id = :s", s=sid)
    log_ids = {log["id"] for log in logs}
    parents = [log["parent_log_id"] for log in logs if log["parent_log_id"] is not None]
    assert parents and set(parents) <= log_ids
    for log in logs:
        data = json.loads(log["result_data"]) if log["result_data"] else {}
        if "message_id" in data:
            assert data["message_id"] in msg_ids
        context = json.loads(log["context_snapshot"])
        assert set(context["context"]["message_ids"]) <= msg_ids
        for loop in context.get("loops", {}).values():
            assert set(loop["first_logs"].values()) <= log_ids


def test_restore_onto_taken_ids_gives_new_ids_and_remaps_every_reference(
    cli: Cli, tmp_path: Path
) -> None:
    flow = import_flow(cli, LOOP_FLOW)
    (old,) = _run_sessions(cli, 1, flow)
    transcript = cli.json("session", "transcript", str(old))
    stats = cli.json("logs", "stats", str(old))
    archive = tmp_path / "taken.jsonl.gz"
    cli.ok("db", "prune", str(old), "--yes", "--archive", str(archive))
    # Another session now holds the pruned session's id, and (on SQLite, which hands the
    # freed top ids out again) a new run's rows hold its rows' ids.
    cli.sql(
        "INSERT INTO sessions (id, topic, flow_template_id, status, created_at) "
        "VALUES (:id, 'squatter', :f, 'finished', :t)",
        id=old,
        f=flow,
        t=datetime.utcnow(),
    )
    (newer,) = _run_sessions(cli, 1, flow)
    if cli.backend == "sqlite":
        first_log = cli.sql(
            "SELECT min(id) AS id FROM step_execution_logs WHERE session_id = :s", s=newer
        )
        assert first_log[0]["id"] == 1  # the pruned session's first log id, taken again
    report = cli.json("db", "restore-archive", str(archive))
    (outcome,) = report["sessions"]
    assert outcome["status"] == "restored_new_ids" and outcome["id"] not in (old, newer)
    restored = outcome["id"]
    _references_stay_inside(cli, restored)
    _references_stay_inside(cli, newer)
    strip = ("id",)
    assert [
        {k: v for k, v in m.items() if k not in strip}
        for m in cli.json("session", "transcript", str(restored))
    ] == [{k: v for k, v in m.items() if k not in strip} for m in transcript]
    assert cli.json("logs", "stats", str(restored))["steps"] == stats["steps"]
    # Forking the restored session copies its (remapped) history like any other.
    last = cli.sql(
        "SELECT max(id) AS id FROM step_execution_logs WHERE session_id = :s", s=restored
    )[0]["id"]
    fork = cli.json("session", "fork", str(restored), "--at", str(last))
    _references_stay_inside(cli, fork["id"])


@pytest.mark.sqlite_only
def test_a_partly_taken_session_is_restored_whole_under_new_ids(cli: Cli, tmp_path: Path) -> None:
    """Only its messages' ids are taken: the session's own id is free, yet it comes back
    with all new ids, never half original and half new."""
    flow = import_flow(cli, LOOP_FLOW)
    keep, old = _run_sessions(cli, 2, flow)
    archive = tmp_path / "partly.jsonl.gz"
    cli.ok("db", "prune", str(old), "--yes", "--archive", str(archive))
    top = cli.sql("SELECT max(id) AS id FROM sessions")[0]["id"]
    assert top == keep
    cli.sql(
        "INSERT INTO messages (id, session_id, speaker_session_role_id, content) "
        "SELECT (SELECT max(id) FROM messages) + 1, :k, min(id), 'taken' FROM session_roles "
        "WHERE session_id = :k",
        k=keep,
    )
    (outcome,) = cli.json("db", "restore-archive", str(archive))["sessions"]
    # (The new session id may be the old one again: the database hands it out.)
    assert outcome["status"] == "restored_new_ids"
    _references_stay_inside(cli, outcome["id"])
    taken = cli.sql("SELECT session_id FROM messages WHERE content = 'taken'")
    assert taken == [{"session_id": keep}]


@pytest.mark.sqlite_only
def test_logs_only_archive_puts_the_logs_back_without_double_counting(
    cli: Cli, tmp_path: Path
) -> None:
    (sid,) = _run_sessions(cli, 1)
    before = _dump(cli)["step_execution_logs"]
    stats = cli.json("logs", "stats", str(sid))
    archive = tmp_path / "logs.jsonl.gz"
    cli.ok("db", "prune", str(sid), "--logs-only", "--yes", "--archive", str(archive))
    report = cli.json("db", "restore-archive", str(archive))
    assert report["restored"] == 1 and report["rows"]["step_execution_logs"] == 9
    assert _dump(cli)["step_execution_logs"] == before
    again = cli.json("logs", "stats", str(sid))
    assert again["total"] == stats["total"] and again["pruned"]["executions"] == 9
    assert cli.json("db", "restore-archive", str(archive))["skipped"] == 1


@pytest.mark.sqlite_only
def test_steps_dropped_by_a_replacing_import_are_recreated_as_retired(
    cli: Cli, tmp_path: Path
) -> None:
    flow = import_flow(cli, LOOP_FLOW)
    # Another flow's steps above them, so the new version's steps get new ids (SQLite
    # would otherwise hand the freed top ids out again).
    import_flow(cli, LOOP_FLOW.replace("name: loop", "name: other"))
    (sid,) = _run_sessions(cli, 1, flow)
    step_ids = {r["step_id"] for r in cli.sql("SELECT step_id FROM step_execution_logs")}
    archive = tmp_path / "steps.jsonl.gz"
    cli.ok("db", "prune", str(sid), "--yes", "--archive", str(archive))
    path = write_flow(tmp_path, LOOP_FLOW.replace("max_loops: 3", "max_loops: 1"), "v2.yaml")
    cli.ok("flow", "import", str(path), "--replace")
    left = {r["id"] for r in cli.sql("SELECT id FROM flow_steps")}
    assert not step_ids & left  # nothing used them any more: the import dropped them
    (outcome,) = cli.json("db", "restore-archive", str(archive))["sessions"]
    assert outcome["status"] == "restored" and "3 step(s)" in outcome["reason"]
    retired = cli.sql('SELECT id, "order" FROM flow_steps WHERE "order" < 0 ORDER BY id')
    assert [(r["id"], r["order"]) for r in retired] == [(s, -s) for s in sorted(step_ids)]
    assert len(cli.json("logs", str(sid))) == 9
    # The flow itself still shows only its current steps.
    assert len(cli.json("flow", "show", str(flow))["steps"]) == 3


@pytest.mark.sqlite_only
def test_a_session_whose_flow_is_gone_is_reported_not_forced(cli: Cli, tmp_path: Path) -> None:
    flow = import_flow(cli, LOOP_FLOW)
    (sid,) = _run_sessions(cli, 1, flow)
    archive = tmp_path / "gone.jsonl.gz"
    cli.ok("db", "prune", str(sid), "--yes", "--archive", str(archive))
    cli.sql("DELETE FROM flow_steps")
    cli.sql("DELETE FROM flow_templates")
    result = cli("db", "restore-archive", str(archive), "--json")
    assert result.exit_code == 1
    (outcome,) = json.loads(result.stdout)["sessions"]
    assert outcome["status"] == "not_restored"
    assert outcome["reason"] == f"its flow {flow} no longer exists"
    assert cli.sql("SELECT count(*) AS n FROM sessions")[0]["n"] == 0


# --- torn, damaged and hostile archives ----------------------------------------------------


def _members(path: Path) -> list[bytes]:
    """The archive's gzip members, as written (header, batches…, manifest)."""
    data = path.read_bytes()
    members, start = [], 0
    for i in range(1, len(data) - 1):
        if data[i : i + 3] == b"\x1f\x8b\x08" and i > start:
            try:
                gzip.decompress(data[start:i])
            except (OSError, EOFError):
                continue
            members.append(data[start:i])
            start = i
    members.append(data[start:])
    return members


@pytest.mark.sqlite_only
def test_a_torn_archive_restores_its_complete_batches(cli: Cli, tmp_path: Path) -> None:
    ids = _run_sessions(cli, 3)
    archive = tmp_path / "torn.jsonl.gz"
    cli.ok("db", "prune", "--older-than", "0s", "--yes", "--batch", "1", "--archive", str(archive))
    members = _members(archive)
    assert len(members) == 5  # header, three batches, manifest
    # As a prune killed while writing its third batch leaves it: that batch half on disk.
    torn = tmp_path / "cut.jsonl.gz"
    torn.write_bytes(b"".join(members[:3]) + members[3][: len(members[3]) // 2])
    report = cli.json("db", "restore-archive", str(torn))
    assert report["archive"]["torn_tail"] is True and report["archive"]["complete"] is False
    assert [s["id"] for s in report["sessions"]] == ids[:2]
    text = cli.ok("db", "restore-archive", str(torn), "--dry-run").stdout
    assert "ends in an interrupted batch" in text


@pytest.mark.sqlite_only
def test_a_damaged_archive_is_refused_and_nothing_is_restored(cli: Cli, tmp_path: Path) -> None:
    _run_sessions(cli, 2)
    archive = tmp_path / "bad.jsonl.gz"
    cli.ok("db", "prune", "--older-than", "0s", "--yes", "--batch", "1", "--archive", str(archive))
    members = _members(archive)
    # Rewrite the second batch's content (validly compressed) with one changed byte: only
    # its checksum can tell.
    body = gzip.decompress(members[2]).replace(b'"topic":"', b'"topic":"X', 1)
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(members[0] + members[1] + gzip.compress(body) + b"".join(members[3:]))
    result = cli("db", "restore-archive", str(damaged))
    assert result.exit_code == 1 and "checksum mismatch" in result.stderr
    assert cli.sql("SELECT count(*) AS n FROM sessions")[0]["n"] == 0
    # Flipped bits in the compressed stream: gzip's own CRC catches them.
    raw = bytearray(archive.read_bytes())
    raw[len(members[0]) + len(members[1]) + 40] ^= 0xFF
    flipped = tmp_path / "flipped.jsonl.gz"
    flipped.write_bytes(bytes(raw))
    result = cli("db", "restore-archive", str(flipped))
    assert result.exit_code == 1 and result.stderr.startswith("Error: archive ")
    assert cli.sql("SELECT count(*) AS n FROM sessions")[0]["n"] == 0


def _write_archive(path: Path, records: list[dict[str, Any]]) -> None:
    from flowcli.maintenance.archive import ArchiveWriter

    writer = ArchiveWriter(path, {"created_at": "2026-01-01 00:00:00"})
    writer.write_batch(records)
    writer.finish()


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not gzip at all", "is not a flowcli archive"),
        (gzip.compress(b'{"kind":"header","format":"other"}\n'), "is not a flowcli archive"),
        (
            gzip.compress(b'{"kind":"header","format":"flowcli-archive","version":99}\n'),
            "format version 99",
        ),
        (gzip.compress(b""), "is empty"),
        (
            gzip.compress(
                b'{"kind":"header","format":"flowcli-archive","version":1}\n'
                + b"[" * 100_000
                + b"\n"
            ),
            "nested too deeply",
        ),
        (
            gzip.compress(
                b'{"kind":"header","format":"flowcli-archive","version":1}\n'
                b'{"kind":"session","session":{"id":1,"topic":{"a":1}}}\n'
            ),
            "holds a nested value",
        ),
    ],
    ids=["not-gzip", "other-format", "future-version", "empty", "deep-nesting", "nested-value"],
)
def test_hostile_archives_are_refused_with_one_line(
    cli: Cli, tmp_path: Path, content: bytes, message: str
) -> None:
    cli.ok("db", "upgrade")
    path = tmp_path / "hostile.jsonl.gz"
    path.write_bytes(content)
    result = cli("db", "restore-archive", str(path))
    assert result.exit_code == 1, result.stdout
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.sqlite_only
def test_an_archived_column_name_is_never_spliced_into_sql(cli: Cli, tmp_path: Path) -> None:
    (sid,) = _run_sessions(cli, 1)
    path = tmp_path / "inject.jsonl.gz"
    cli.ok("db", "prune", str(sid), "--yes", "--archive", str(path))
    from flowcli.maintenance.archive import iter_batches

    (record,) = next(iter_batches(path))
    record["session"]['id") VALUES (1); DROP TABLE roles; --'] = 1
    crafted = tmp_path / "crafted.jsonl.gz"
    _write_archive(crafted, [record])
    result = cli("db", "restore-archive", str(crafted), "--json")
    assert result.exit_code == 1
    (outcome,) = json.loads(result.stdout)["sessions"]
    assert outcome["status"] == "not_restored"
    assert "columns this database lacks" in outcome["reason"].replace("column(s)", "columns")
    assert cli.sql("SELECT count(*) AS n FROM roles")[0]["n"] == 3
    assert cli.sql("SELECT count(*) AS n FROM sessions")[0]["n"] == 0


def test_restore_archive_of_a_missing_file_is_one_line(cli: Cli, tmp_path: Path) -> None:
    cli.ok("db", "upgrade")
    result = cli("db", "restore-archive", str(tmp_path / "nope.jsonl.gz"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: archive ") and "does not exist" in result.stderr


@pytest.mark.postgres
def test_restored_ids_move_postgres_sequences_past_them(
    pg_url: str, runner, tmp_path: Path
) -> None:
    """Restoring into a database whose sequences are behind (a fresh one, another server):
    the next rows must not collide with the restored ids."""
    cli = Cli(runner, pg_url)
    flow = import_flow(cli, LOOP_FLOW)
    ids = _run_sessions(cli, 2, flow)
    archive = tmp_path / "seq.jsonl.gz"
    cli.ok("db", "prune", "--older-than", "0s", "--yes", "--archive", str(archive))
    for table in ("sessions", "session_roles", "messages", "step_execution_logs"):
        cli.sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1, false)")
    assert cli.json("db", "restore-archive", str(archive))["restored"] == 2
    (new,) = _run_sessions(cli, 1, flow)
    assert new > max(ids)
    assert cli.json("logs", "stats", str(new))["total"]["runs"] == 9
