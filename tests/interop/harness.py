"""flowcli and MRC's own backend taking turns on one database file.

``Shared`` is one copy of the MRC fixture, adopted by ``flowcli db doctor --fix``, with
MRC's real backend serving it; both engines run sessions of the fixture's flows on it.
Nothing here guesses at MRC: every MRC step is MRC's own code answering over HTTP.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from flowcli.cli.app import app
from tests.conftest import WIDE_ENV
from tests.mrc_backend import MrcBackend

# The fixture's flows whose loops really loop (a step with next_step_order and max_loops):
# flow 1 (step 1 repeats itself once), 3 (steps 1 and 2 repeat themselves 2 and 12
# times), 4 (steps 2..6 three more times), 5 (step 2 three more times), 7 (steps 1..2
# three more times). Flow 2 and 6 have no loop.
LOOPING_FLOWS = (1, 3, 4, 5, 7)
# One engine alone, start to end: the step ids of each flow's executions.
ONE_ENGINE: dict[int, list[int]] = {
    1: [1, 1],
    3: [5, 5, 5] + [6] * 13 + [7, 8],
    4: [9, 10, 11, 12, 13, 14] + [10, 11, 12, 13, 14] * 3,
    5: [15, 16, 16, 16, 16, 17],
    7: [21, 22] * 4 + [23],
}
# Step refs the fixture's roles do not name: MRC needs every ref mapped to create a
# session with roles, and resolves them through that mapping. '打工人' plays role 5.
_UNNAMED_REFS = {"打工人": 5, "__TOPIC__": 5}


def role_mappings(db: Path, flow_id: int) -> dict[str, int]:
    """MRC's role_mappings for a flow of the fixture: each ref to the role of that name."""
    con = sqlite3.connect(db)
    try:
        roles = dict(con.execute("SELECT name, id FROM roles"))
        refs: set[str] = set()
        for speaker, target in con.execute(
            "SELECT speaker_role_ref, target_role_ref FROM flow_steps WHERE flow_template_id = ?",
            (flow_id,),
        ):
            refs.add(speaker)
            if target:
                refs.add(target)
    finally:
        con.close()
    return {ref: roles.get(ref, _UNNAMED_REFS.get(ref, 5)) for ref in sorted(refs)}


@dataclass
class Shared:
    """One database file, one MRC server on it, and flowcli run in this process."""

    db: Path
    mrc: MrcBackend

    # --- flowcli ---------------------------------------------------------------------

    def flowcli(self, *args: Any) -> Result:
        argv = ["--db", str(self.db), *[str(a) for a in args]]
        return CliRunner().invoke(app, argv, env=WIDE_ENV)

    def ok(self, *args: Any) -> Result:
        result = self.flowcli(*args)
        assert result.exit_code == 0, (
            f"flowcli {' '.join(map(str, args))} exited {result.exit_code}: {result.stderr}"
        )
        return result

    def json(self, *args: Any) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    # --- MRC ---------------------------------------------------------------------------

    def mrc_session(self, flow_id: int, *, start: bool = True, topic: str = "interop") -> int:
        """A session MRC creates (with its role mappings) and, by default, starts."""
        sid = self.mrc.create_session(flow_id, topic, role_mappings(self.db, flow_id))
        if start:
            self.mrc.control(sid, "start")
        return sid

    def mrc_steps(self, sid: int, k: int) -> None:
        for _ in range(k):
            self.mrc.run_next(sid)

    def mrc_continues(self, sid: int) -> dict[str, Any]:
        """MRC lists, reads and exports the session, then runs it to its end; its state."""
        assert sid in [s["id"] for s in self.mrc.list_sessions()["sessions"]]
        session = self.mrc.session(sid)
        messages = self.mrc.messages(sid)["messages"]
        exported = self.mrc.export(sid)
        assert len(exported["messages"]) == len(messages)
        if session["status"] == "not_started":
            self.mrc.control(sid, "start")
        self.mrc.run_to_end(sid)
        return self.mrc.session(sid)

    # --- the log, as stored -------------------------------------------------------------

    def rows(self, sid: int) -> list[dict[str, Any]]:
        con = sqlite3.connect(self.db)
        con.row_factory = sqlite3.Row
        try:
            return [
                dict(r)
                for r in con.execute(
                    "SELECT * FROM step_execution_logs WHERE session_id = ? "
                    "ORDER BY execution_order, id",
                    (sid,),
                )
            ]
        finally:
            con.close()

    def steps(self, sid: int) -> list[int]:
        """The step ids of the session's completed executions, in order."""
        return [r["step_id"] for r in self.rows(sid) if r["status"] == "completed"]

    def session_row(self, sid: int) -> dict[str, Any]:
        con = sqlite3.connect(self.db)
        con.row_factory = sqlite3.Row
        try:
            return dict(con.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchone())
        finally:
            con.close()

    def assert_mrc_numbering_free(self, sid: int) -> None:
        """MRC's next log row number (executed_steps_count + 1) is above every row."""
        rows = self.rows(sid)
        count = self.session_row(sid)["executed_steps_count"] or 0
        assert all(r["execution_order"] <= count for r in rows), (count, rows[-1:])
        orders = [r["execution_order"] for r in rows]
        assert len(orders) == len(set(orders)), orders
