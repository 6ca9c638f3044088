"""``flowcli demo``: the shipped example flow, run end to end on the current database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowcli.errors import FlowcliError

if TYPE_CHECKING:
    from flowcli.db.connection import Database
    from flowcli.engine.runner import AutoSummary


def examples_dir() -> Path:
    """The example flows: shipped in the wheel as flowcli/examples, or the source tree's."""
    import flowcli

    pkg = Path(flowcli.__file__).resolve().parent
    for candidate in (pkg / "examples", pkg.parent / "examples"):
        if (candidate / "demo.yaml").is_file():
            return candidate
    raise FlowcliError("flowcli's example flows are missing from this installation")


@dataclass
class DemoResult:
    flow_file: Path
    flow_id: int
    session_id: int
    summary: AutoSummary


def run_demo(db: Database) -> DemoResult:
    from flowcli.engine.lifecycle import create_session
    from flowcli.engine.runner import auto
    from flowcli.flows.spec import load_flow_file
    from flowcli.flows.store import import_flow, known_role_names

    path = examples_dir() / "demo.yaml"
    doc = load_flow_file(path, known_roles=known_role_names(db))
    flow = import_flow(db, doc)
    session_id = create_session(db, flow.id)
    summary = auto(db, session_id)
    return DemoResult(flow_file=path, flow_id=flow.id, session_id=session_id, summary=summary)
