"""A prune on MRC's own database removes exactly what MRC's session delete would, while
MRC's backend is serving it; afterwards MRC still lists, reads and runs the remaining
sessions, and reads the ones `restore-archive` puts back."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import Cli

SESSION_TABLES = ("sessions", "session_roles", "messages", "step_execution_logs")


def _table_digests(db: Path) -> dict[str, tuple[int, str]]:
    """Every table's row count and a digest of its rows (outside a session's own rows)."""
    con = sqlite3.connect(db)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        out = {}
        for name in names:
            if name in SESSION_TABLES:
                continue
            rows = con.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall()
            out[name] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
        return out
    finally:
        con.close()


def _session_rows(db: Path, sid: int) -> dict[str, list[Any]]:
    con = sqlite3.connect(db)
    try:
        out = {"sessions": con.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchall()}
        for table in SESSION_TABLES[1:]:
            out[table] = con.execute(
                f"SELECT * FROM {table} WHERE session_id = ? ORDER BY id", (sid,)
            ).fetchall()
        return out
    finally:
        con.close()


def _ids(db: Path, sql: str = "SELECT id FROM sessions ORDER BY id") -> list[int]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute(sql)]
    finally:
        con.close()


def _message_total(mrc: Any, sid: int) -> int:
    """MRC's own count of a session's messages (its list is paged)."""
    return int(mrc.messages(sid)["total"])


def test_prune_on_mrc_database_leaves_it_whole_for_mrc(
    mrc_copy: Path, make_cli: Any, mrc_backend: Any, tmp_path: Path
) -> None:
    cli: Cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    mrc = mrc_backend(mrc_copy)
    # MRC's own forced stop marks a session 'terminated' (its forced delete commits that,
    # then fails on its own defect): an ended session for the prune.
    status, _ = mrc.call("DELETE", "/api/sessions/2?force=true")
    assert status == 500
    assert mrc.session(2)["status"] == "terminated"
    finished = _ids(mrc_copy, "SELECT id FROM sessions WHERE status = 'finished' ORDER BY id")
    assert finished == [7, 12, 47, 48, 58]
    doomed = sorted([2, *finished])
    others_before = _table_digests(mrc_copy)
    all_before = _ids(mrc_copy)
    rows_before = {sid: _session_rows(mrc_copy, sid) for sid in all_before}

    archive = tmp_path / "mrc.jsonl.gz"
    report = cli.json(
        "db", "prune", "--older-than", "0s", "--yes", "--archive", str(archive), "--batch", "10"
    )
    assert sorted(report["pruned_sessions"]) == doomed and report["kept"] == []
    # Exactly MRC's session delete: the sessions, their session roles, messages and step
    # logs; no template, step, role or any other of MRC's tables.
    assert _table_digests(mrc_copy) == others_before
    remaining = [sid for sid in all_before if sid not in doomed]
    assert _ids(mrc_copy) == remaining
    for sid in remaining:
        assert _session_rows(mrc_copy, sid) == rows_before[sid]
    for sid in doomed:
        assert not any(_session_rows(mrc_copy, sid).values())

    # MRC, still running on the same file, lists and reads every remaining session…
    listed = [s["id"] for s in mrc.list_sessions()["sessions"]]
    assert sorted(listed) == remaining
    for sid in remaining:
        assert mrc.session(sid)["id"] == sid
        assert _message_total(mrc, sid) == len(rows_before[sid]["messages"])
    status, _payload = mrc.call("GET", "/api/sessions/58")
    assert status == 404
    # …and runs a new session of flow 7 to its end.
    new = mrc.create_session(7, "after the prune", {"Jonh": 8, "Mason": 7, "Tom": 9})
    mrc.control(new, "start")
    assert mrc.run_to_end(new) == 9
    assert mrc.session(new)["status"] == "finished"
    assert len(mrc.export(new)["messages"]) == 9

    # The archive puts the pruned sessions back, and MRC reads them as it did before.
    restored = cli.json("db", "restore-archive", str(archive))
    by_id = {s["archived_id"]: s for s in restored["sessions"]}
    assert sorted(by_id) == doomed
    for sid in doomed:
        outcome = by_id[sid]
        assert outcome["status"] in ("restored", "restored_new_ids"), outcome
        back = outcome["id"]
        got = mrc.session(back)
        assert got["topic"] == rows_before[sid]["sessions"][0][2]
        assert _message_total(mrc, back) == len(rows_before[sid]["messages"])
        if outcome["status"] == "restored":
            assert _session_rows(mrc_copy, sid) == rows_before[sid]
    assert len(mrc.step_logs(by_id[58]["id"])["logs"]) == 9
    assert json.loads(cli.ok("db", "doctor", "--json").stdout)["ok"] is True
