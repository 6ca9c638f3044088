"""A prune is safe while others work: a concurrent `auto` keeps running through it, and a
kill -9 at any moment leaves every session whole in the database or whole in the
archive (and, after `restore-archive`, whole in the database again)."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flowcli.maintenance.archive import ArchiveSummary, iter_batches
from tests.maintenance.builders import clone_session, finished_session, session_rows
from tests.reliability.kill import (
    completed_count,
    consistency_problems,
    create_session,
    import_flow,
    loop_flow,
    spawn,
)
from tests.waiting import wait_until

DEADLINE_S = 120.0


def _count(db: Path, sql: str, *params: Any) -> int:
    con = sqlite3.connect(db, timeout=30)
    try:
        return int(con.execute(sql, params).fetchone()[0])
    finally:
        con.close()


def test_a_concurrent_auto_keeps_running_through_a_prune(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    source = finished_session(db)
    clones = clone_session(db, source, 200, status="finished")
    loops = 100_000
    sid = create_session(db, import_flow(db, loop_flow(loops, "endless")))
    # The default busy timeout (5 s): a prune batch must never make a step wait that long.
    auto = spawn(db, "auto", str(sid), "--quiet", busy_timeout=5.0)
    try:
        wait_until(lambda: completed_count(db, sid) >= 3, "auto's first steps")
        archive = tmp_path / "busy.jsonl.gz"
        prune = spawn(
            db,
            "db", "prune", "--older-than", "0s", "--batch", "100", "--yes", "--json",
            "--archive", str(archive),
            busy_timeout=5.0,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, err = prune.communicate(timeout=300)
        assert prune.returncode == 0, err
        assert auto.poll() is None, "auto stopped during the prune"
    finally:
        auto.send_signal(signal.SIGINT)  # stop after the current step, as Ctrl-C does
        _, auto_err = auto.communicate(timeout=120)
    assert auto.returncode == 130, auto_err
    report = json.loads(out)
    assert sorted(report["pruned_sessions"]) == sorted([source, *clones])
    assert report["kept"] == [] and report["batches"] > 20  # 18 rows a session
    # auto ran steps while the prune was archiving and deleting, and none of them failed.
    summary = ArchiveSummary(str(archive))
    for _ in iter_batches(archive, summary):
        pass
    started, finished = summary.header["created_at"], summary.manifest["finished_at"]  # type: ignore[index]
    during = _count(
        db,
        "SELECT count(*) FROM step_execution_logs WHERE session_id = ? AND status = 'completed' "
        "AND completed_at > ? AND completed_at < ?",
        sid,
        started,
        finished,
    )
    assert during > 0
    assert "locked" not in auto_err and "busy" not in auto_err
    assert _count(db, "SELECT count(*) FROM step_execution_logs WHERE status != 'completed'") == 0
    assert consistency_problems(db, sid, loops) == []
    assert _count(db, "SELECT count(*) FROM sessions") == 1


def _archived(archive: Path) -> tuple[dict[int, dict[str, Any]], ArchiveSummary]:
    summary = ArchiveSummary(str(archive))
    records: dict[int, dict[str, Any]] = {}
    if archive.exists() and archive.stat().st_size:
        for batch in iter_batches(archive, summary):
            for record in batch:
                records[int(record["session"]["id"])] = record
    return records, summary


def _all_or_nothing(
    db: Path, ids: list[int], baseline: dict[int, Any], archived: dict[int, dict[str, Any]]
) -> tuple[list[str], int, int]:
    """Problems, sessions gone (each whole in the archive), sessions archived but present."""
    problems: list[str] = []
    gone = archived_and_present = 0
    for sid in ids:
        rows = session_rows(db, sid)
        if rows == baseline[sid]:
            archived_and_present += sid in archived
            continue
        if any(rows.values()):
            problems.append(
                f"session {sid} is half there: {[(t, len(r)) for t, r in rows.items()]}"
            )
            continue
        record = archived.get(sid)
        if record is None:
            problems.append(f"session {sid} is gone but not in the archive")
            continue
        want = baseline[sid]
        got = {
            "session_roles": len(record["session_roles"]),
            "messages": len(record["messages"]),
            "step_execution_logs": len(record["logs"]),
        }
        if got != {t: len(want[t]) for t in got}:
            problems.append(f"session {sid}: the archive holds {got}, not the whole session")
        gone += 1
    return problems, gone, archived_and_present


@pytest.mark.slow
def test_kill_9_during_prune_leaves_every_session_whole(tmp_path: Path) -> None:
    trials, per_trial = 30, 12
    db = tmp_path / "kill.db"
    source = finished_session(db)
    ids = [source, *clone_session(db, source, trials * per_trial - 1, status="finished")]
    baseline = {sid: session_rows(db, sid) for sid in ids}
    rng = random.Random(1717)
    tally = {"killed_before_any_delete": 0, "killed_mid_prune": 0, "finished": 0}
    archived_and_present = 0
    archives = []
    for trial in range(trials):
        chunk = ids[trial * per_trial : (trial + 1) * per_trial]
        archive = tmp_path / f"trial-{trial}.jsonl.gz"
        archives.append(archive)
        marks = ",".join("?" * len(chunk))

        def remaining(chunk: list[int] = chunk, marks: str = marks) -> int:
            return _count(db, f"SELECT count(*) FROM sessions WHERE id IN ({marks})", *chunk)

        proc = spawn(
            db, "db", "prune", *map(str, chunk), "--batch", "36", "--yes", "--archive", str(archive)
        )
        target = rng.randrange(0, per_trial)
        if trial % 2 == 0:
            # Kill once `target` sessions are gone (0: during start-up or the first batch).
            wait_until(
                lambda t=target, p=proc: remaining() <= per_trial - t or p.poll() is not None,
                "sessions to go",
            )
        else:
            # Kill right after the archive grew by a batch: between its verification and
            # the delete that follows it.
            sizes = {"last": 0, "grown": 0}

            def grown(
                t: int = target, archive: Path = archive, sizes: dict = sizes, p: Any = proc
            ) -> bool:
                size = archive.stat().st_size if archive.exists() else 0
                if size > sizes["last"]:
                    sizes["last"], sizes["grown"] = size, sizes["grown"] + 1
                return sizes["grown"] > t % 4 or p.poll() is not None

            wait_until(grown, "the archive to grow")
        proc.kill()
        proc.communicate(timeout=60)
        archived, summary = _archived(archive)
        problems, gone, present = _all_or_nothing(db, chunk, baseline, archived)
        assert problems == [], f"trial {trial}: {problems}"
        assert _count(db, "SELECT count(*) FROM pragma_foreign_key_check") == 0
        archived_and_present += present
        if proc.returncode == 0:
            tally["finished"] += 1
        elif gone == 0:
            tally["killed_before_any_delete"] += 1
        else:
            tally["killed_mid_prune"] += 1
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("PRAGMA integrity_check")] == ["ok"]
    con.close()
    assert tally["killed_before_any_delete"] > 0 and tally["killed_mid_prune"] > 0, tally
    # Every archive restores; afterwards every session is exactly as it was before. (One
    # process restores them all: the command itself is tested in test_archive.py.)
    from flowcli.db.connection import Database, resolve_target
    from flowcli.maintenance.restore import restore_archive

    database = Database(resolve_target(str(db)))
    try:
        for archive in archives:
            if archive.exists() and archive.stat().st_size:
                assert restore_archive(database, archive).failed == 0
    finally:
        database.dispose()
    assert {sid: session_rows(db, sid) for sid in ids} == baseline, (tally, archived_and_present)
    # …and nothing twice: a session the archive holds but no kill let the prune delete was
    # skipped by the restore, not copied under new ids.
    assert _count(db, "SELECT count(*) FROM sessions") == len(ids)
