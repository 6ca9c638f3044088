"""The harness itself: MRC's unmodified backend serves a copy of its own database."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_mrc_runs_flow_7_on_an_untouched_copy(mrc_copy: Path, mrc_backend: Any) -> None:
    mrc = mrc_backend(mrc_copy)
    sid = mrc.create_session(7, "smoke", {"Jonh": 8, "Mason": 7, "Tom": 9})
    mrc.control(sid, "start")
    assert mrc.run_to_end(sid) == 9
    session = mrc.session(sid)
    assert session["status"] == "finished"
    assert session["executed_steps_count"] == 9
    assert len(mrc.messages(sid)["messages"]) == 9
    assert len(mrc.export(sid)["messages"]) == 9
    assert [log["step_id"] for log in mrc.step_logs(sid)["logs"]] == [21, 22] * 4 + [23]
    assert sid in [s["id"] for s in mrc.list_sessions()["sessions"]]
