"""Work bombs (issue 14): tiny flows whose conditions or templates build values of 2**40
shared items and then hash or compare them. Each used to pass `flow validate` and then run
at 100% CPU for hours, inside the step's write transaction. Now each ends with one clear
line within seconds: refused by `flow validate` and `flow import`, and, when such a flow is
already stored (written before this check, or by another application), its step fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import cpu_seconds, run_sql
from tests.reliability.kill import flowcli, import_flow
from tests.reliability.test_hostile_input import assert_clean

LEVELS = 40  # 2**40 leaves: hashing or comparing them takes hours


def _shared_tuple(leaf: str) -> str:
    """``[(v39, v39) for v39 in [… [(v0, v0) for v0 in [leaf]] …]]``: each level doubles."""
    source = f"[{leaf}]"
    for level in range(LEVELS):
        source = f"[(v{level}, v{level}) for v{level} in {source}]"
    return source


HASHED = f"vars.get({_shared_tuple('0')}[0]) is None"
COMPARED = f"{_shared_tuple('0')} == {_shared_tuple('1')}"
TEMPLATE = (
    "{% set a0 = [1] %}"
    + "".join(f"{{% set a{n + 1} = [a{n}, a{n}] %}}" for n in range(LEVELS))
    + "{% for i in range(3) %}{{ loop.changed(a"
    + str(LEVELS)
    + ") }}{% endfor %}"
)

# where the bomb goes in the flow document, and the bomb
BOMBS: dict[str, tuple[str, str]] = {
    "condition-hashes": ("condition", HASHED),
    "condition-compares": ("condition", COMPARED),
    "end_condition": ("end_condition", HASHED),
    "template-loop-changed": ("template", TEMPLATE),
}
BOUND = 45.0  # CPU seconds: loose; the bombs themselves take hours


def _flow(where: str | None = None, bomb: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "bomb",
        "roles": {"A": {"prompt": "You are A."}},
        "termination_config": {"end_condition": "executed_steps > 100"},
        "responder": {"type": "template", "template": "hello {{ round }}"},
        "steps": [
            {
                "speaker_role_ref": "A",
                "task_type": "comment",
                "context_scope": "none",
                "logic_config": {"condition": "round >= 0"},
            }
        ],
    }
    if where == "condition":
        doc["steps"][0]["logic_config"]["condition"] = bomb
    elif where == "end_condition":
        doc["termination_config"]["end_condition"] = bomb
    elif where == "template":
        doc["responder"]["template"] = bomb
    return doc


@pytest.mark.parametrize("name", list(BOMBS))
def test_validate_and_import_refuse_a_work_bomb(tmp_path: Path, name: str) -> None:
    where, bomb = BOMBS[name]
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump(_flow(where, bomb)), encoding="utf-8")
    db = tmp_path / "bomb.db"
    started = cpu_seconds()
    validated = flowcli(db, "flow", "validate", str(path))
    imported = flowcli(db, "flow", "import", str(path))
    assert cpu_seconds() - started < BOUND
    for result in (validated, imported):
        assert result.exit_code == 1, result.output
        assert_clean(result)
        assert "exponential" in result.stderr, result.stderr
    assert not db.exists()  # refused before anything was stored


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_stored_work_bomb_fails_its_step_within_seconds(tmp_path: Path, name: str) -> None:
    where, bomb = BOMBS[name]
    db = tmp_path / "stored.db"
    flow_id = import_flow(db, yaml.safe_dump(_flow()))
    # Written straight into the tables, as a flow stored before this check (or by another
    # application) would be: the check at import never saw it.
    if where == "condition":
        logic = json.dumps({"condition": bomb})
        run_sql(db, "UPDATE flow_steps SET logic_config = :v", v=logic)
    elif where == "end_condition":
        termination = json.dumps({"end_condition": bomb})
        run_sql(db, "UPDATE flow_templates SET termination_config = :v", v=termination)
    else:
        responder = json.dumps({"type": "template", "template": bomb})
        run_sql(db, "UPDATE flow_templates SET responder = :v", v=responder)
    started = cpu_seconds()
    created = flowcli(db, "session", "create", "--flow", str(flow_id))
    assert_clean(created)
    if created.exit_code == 0:
        ran = flowcli(db, "run-next", created.stdout.strip())
        assert_clean(ran)
        assert ran.exit_code != 0, ran.output
    assert cpu_seconds() - started < BOUND
    # Nothing half-done: no step completed, nothing left running.
    statuses = [row["status"] for row in run_sql(db, "SELECT status FROM step_execution_logs")]
    assert "completed" not in statuses and "running" not in statuses
