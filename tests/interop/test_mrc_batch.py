"""Batches on an MRC database: after flowcli's batches (skip, resume, retry, auto, cancel)
on an adopted copy of MRC's own file, MRC's real backend still lists and reads every
session a batch touched, and runs to the end each one that can still run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Cli


def _llm(fake: Any) -> list[str]:
    return [
        "--responder",
        "openai",
        "--llm-base-url",
        fake.base_url,
        "--llm-model",
        "m",
        "--llm-retries",
        "0",
        "--retries",
        "0",
    ]


def test_mrc_reads_and_runs_every_session_a_batch_touched(
    mrc_copy: Path, make_cli: Any, mrc_backend: Any, fake_llm: Any
) -> None:
    cli: Cli = make_cli(mrc_copy)
    cli.ok("db", "doctor", "--fix", "--yes")
    touched: dict[str, list[int]] = {}

    def batch(*args: str) -> list[int]:
        report = cli.json(*args, "--yes")
        assert report["open"] == 0 and report["outcomes"].get("done") == report["total"]
        items = cli.json("batch", "show", str(report["id"]))["items"]
        return [item["session_id"] for item in items]

    # flow 7's stuck sessions (the bug report's 51 among them): skip past the stuck step
    touched["skip"] = batch(
        "session", "skip", "--where",
        "flow == 'Test1' and status == 'running' and executed_steps == 0",
        "--limit", "2", "--reason", "outage",
    )  # fmt: skip
    # paused by hand, resumed as a batch
    cli.ok("session", "pause", "52")
    touched["resume"] = batch("session", "resume", "--where", "status == 'paused'")
    # failed by an outage, then retried as a batch through an LLM. (The failure is set
    # directly: MRC cannot fail a session, and the log row of a failure flowcli records
    # takes an execution_order MRC numbers again, which is issue 12's to settle.)
    cli.sql("UPDATE sessions SET status = 'failed', error_reason = 'LLM down' WHERE id = 53")
    touched["retry"] = batch(
        "session", "retry", "--where", "status == 'failed' and 'down' in error_reason",
        *_llm(fake_llm),
    )  # fmt: skip
    # two more of flow 7 run to the end by flowcli
    touched["auto"] = batch(
        "auto", "--where", "flow_id == 7 and status == 'running' and id >= 54", "--limit", "2"
    )
    touched["cancel"] = batch(
        "session", "cancel", "--where", "flow_id == 4 and status == 'running'", "--limit", "2"
    )
    assert [len(ids) for ids in touched.values()] == [2, 1, 1, 2, 2]
    assert touched["resume"] == [52] and touched["retry"] == [53]

    mrc = mrc_backend(mrc_copy)
    listed = {s["id"]: s for s in mrc.list_sessions()["sessions"]}
    for action, ids in touched.items():
        for sid in ids:
            assert sid in listed, (action, sid)
            session = mrc.session(sid)
            assert session["id"] == sid
            mrc.messages(sid)
            mrc.export(sid)
    for sid in touched["auto"]:
        assert mrc.session(sid)["status"] == "finished"
    for sid in touched["skip"] + touched["resume"] + touched["retry"]:
        assert mrc.session(sid)["status"] == "running"
        mrc.run_to_end(sid)
        assert mrc.session(sid)["status"] == "finished", sid
    # a cancelled session is ended for flowcli; its row is still one MRC's engine can run
    for sid in touched["cancel"]:
        assert mrc.session(sid)["status"] in ("cancelled", "terminated")
    forced = touched["cancel"][0]
    mrc.ok("PUT", f"/api/sessions/{forced}", {"status": "running"})
    mrc.run_to_end(forced)
    assert mrc.session(forced)["status"] == "finished"
