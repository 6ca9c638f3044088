"""No room to write: ``auto`` under a file-size limit stops with one clear line, the
database stays consistent, and the run resumes to completion once there is room.

The limit is real: RLIMIT_FSIZE on the child process (with SIGXFSZ ignored, so the
write returns EFBIG instead of killing it), the way a full disk or a quota behaves.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from pathlib import Path

from tests.reliability.kill import (
    consistency_problems,
    create_session,
    expected_orders,
    flowcli,
    import_flow,
    read_logs,
    session_state,
    spawn,
)

LOOPS = 20
# Each message is ~90 KB: a few steps fill a 1.5 MB allowance.
BIG_MESSAGES = f"""
roles:
  A: {{prompt: "You are A."}}
  B: {{prompt: "You are B."}}
  C: {{prompt: "You are C."}}
name: big messages
termination_config: {{max_steps: 100000}}
responder:
  type: template
  template: "{{{{ speaker }}}} {{{{ step }}}} {{{{ 'x' * 90000 }}}}"
steps:
  - {{speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}}
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: none
    logic_config: {{next_step_order: 1, max_loops: {LOOPS}}}
  - {{speaker_role_ref: C, task_type: conclude, context_scope: none}}
"""


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_file_size_limit_during_auto_then_resume(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    sid = create_session(db, import_flow(db, BIG_MESSAGES))
    limit = db.stat().st_size + 1_500_000
    proc = spawn(db, "auto", str(sid), "--quiet", preexec_fn=_limit_file_size(limit))
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "no room to write" in lines[0] and "Traceback" not in err
    # Some steps committed before the limit bit; none was half-written.
    assert consistency_problems(db, sid, LOOPS) == []
    done = [r for r in read_logs(db, sid) if r["status"] == "completed"]
    assert 0 < len(done) < len(expected_orders(LOOPS))
    assert session_state(db, sid)["status"] == "running"
    # With room again, the same session runs to the end, exactly as if never stopped.
    result = flowcli(db, "auto", str(sid), "--quiet")
    assert result.exit_code == 0, result.stderr
    assert consistency_problems(db, sid, LOOPS) == []
    rows = read_logs(db, sid)
    assert [r["order"] for r in rows] == expected_orders(LOOPS)
    assert session_state(db, sid)["status"] == "finished"


def test_no_room_for_a_new_database(tmp_path: Path) -> None:
    # Even creating the schema can meet the limit: one line, and no traceback.
    db = tmp_path / "new.db"
    # (a command that adds something: one that reads never creates a database)
    proc = spawn(
        db,
        "role",
        "add",
        "A",
        "--prompt",
        "You are A.",
        preexec_fn=_limit_file_size(2048),
        stdout=subprocess.PIPE,
    )
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert "no room to write" in err
    # The half-created file is not mistaken for a database: with room, it is created.
    result = flowcli(db, "role", "add", "A", "--prompt", "You are A.")
    assert result.exit_code == 0, result.stderr
    result = flowcli(db, "session", "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "[]"
