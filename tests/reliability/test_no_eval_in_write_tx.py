"""No evaluation inside a write transaction (issue 14).

A step's condition, template, exit condition and end condition are evaluated before its
write transaction opens, so however long an evaluation runs (up to its CPU deadline), it
never holds the database's write lock. The proof is deterministic: at the moment each
evaluation starts, another connection takes the write lock with no busy timeout at all.
With the evaluation inside ``BEGIN IMMEDIATE`` that write finds the database locked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowcli.sandbox.expressions import compile_expression
from flowcli.sandbox.templates import compile_template
from tests.helpers import ROLES
from tests.reliability.kill import create_session, flowcli, import_flow, read_logs

FLOW = (
    ROLES
    + """
name: every evaluation
termination_config: {end_condition: "last.content == 'never'"}
responder: {type: template, template: "said {{ step }} in round {{ round }}"}
steps:
  - speaker_role_ref: A
    task_type: challenge
    context_scope: none
    logic_config: {condition: "round >= 1"}
  - speaker_role_ref: B
    task_type: support
    context_scope: last_message
    logic_config:
      next_step_order: 1
      max_loops: 1
      exit_condition: {type: expression, expr: "'never' in last.content"}
  - {speaker_role_ref: C, task_type: conclude, context_scope: all}
"""
)


def _write_now(db: Path) -> bool:
    """One write transaction on a connection of its own, with no busy timeout: False if
    someone holds the write lock at this moment."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("UPDATE roles SET prompt = prompt WHERE name = 'A'")
        con.execute("COMMIT")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc), exc
        return False
    finally:
        con.close()


def _spy_on(
    monkeypatch: pytest.MonkeyPatch, cls: type, method: str, db: Path, seen: list[str]
) -> None:
    """Have ``cls.method`` (the sandbox's own, not a stand-in) write first, then run."""
    original: Callable[..., Any] = getattr(cls, method)

    def spy(self: Any, names: Any) -> Any:
        seen.append(f"{self.source[:24]}: {'free' if _write_now(db) else 'LOCKED'}")
        return original(self, names)

    monkeypatch.setattr(cls, method, spy)


def test_no_evaluation_or_render_holds_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "evaluations.db"
    sid = create_session(db, import_flow(db, FLOW))
    seen: list[str] = []
    _spy_on(monkeypatch, type(compile_expression("True")), "evaluate_bool", db, seen)
    _spy_on(monkeypatch, type(compile_template("x")), "render", db, seen)
    result = flowcli(db, "auto", str(sid), "--quiet")
    assert result.exit_code == 0, result.stderr
    # Every kind of evaluation ran, and at each one the write lock was free.
    for source in ("round >= 1", "said {{ step }}", "'never' in last", "last.content == 'nev"):
        assert any(s.startswith(source) for s in seen), (source, seen)
    assert all(s.endswith(": free") for s in seen), seen
    rows = read_logs(db, sid)
    assert [r["order"] for r in rows] == [1, 2, 1, 2, 3]
    assert all(r["status"] == "completed" for r in rows)
