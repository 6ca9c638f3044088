"""A session's life outside the steps: create (with snapshots), list, show, the legal
status transitions (start, pause, resume, cancel) and delete.

Creating a session snapshots its flow and roles into the row; the engine only ever
reads those snapshots, so later edits to the template never reach this session.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from flowcli.db import session_store as store
from flowcli.db.engine_state import EngineState
from flowcli.db.json_text import loads_json
from flowcli.db.tables import (
    flow_templates_table,
    roles_table,
)

# `session list` and `session show` read without SQLAlchemy (re-exported here).
from flowcli.engine.session_views import list_sessions, show_session  # noqa: F401
from flowcli.errors import NotFoundError, SessionStateError, UsageError
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.db.connection import Database

templates_t = flow_templates_table
roles_t = roles_table
MAX_TOPIC = 2000
MAX_VAR_CHARS = 65_536
SESSION_STATUSES = store.SESSION_STATUSES


def parse_assignments(pairs: list[str], what: str) -> list[tuple[str, str]]:
    """``KEY=VALUE`` strings from the command line, checked."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{what} {pair!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def parse_var_value(raw: str) -> Any:
    """A ``--var`` value: JSON when it parses (numbers, booleans, objects), else text."""
    if len(raw) > MAX_VAR_CHARS:
        raise UsageError(f"--var value is {len(raw)} characters; the limit is {MAX_VAR_CHARS}")
    try:
        return json.loads(raw)
    except RecursionError:
        raise UsageError("--var value is nested too deeply") from None
    except ValueError:
        return raw


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    return {key: parse_var_value(value) for key, value in parse_assignments(pairs, "--var")}


def create_session(
    db: Database,
    flow_id: int,
    *,
    topic: str | None = None,
    role_map: dict[str, str] | None = None,
    variables: dict[str, Any] | None = None,
    user_id: int | None = None,
) -> int:
    """Create a ``not_started`` session of flow ``flow_id``; returns its id."""
    from flowcli.flows.store import flow_steps, template_row

    role_map = role_map or {}
    variables = variables or {}
    try:
        vars_json = json.dumps(variables, ensure_ascii=False)
    except (ValueError, RecursionError):
        raise UsageError(
            "session variables are not JSON-serialisable or nested too deeply"
        ) from None
    now = store.utcnow()
    with db.write() as conn:
        flow = template_row(conn, flow_id)
        steps = flow_steps(conn, flow_id)
        if not steps:
            raise SessionStateError(f"flow {flow_id} has no steps")
        chosen_topic = (topic if topic is not None else flow.get("topic")) or flow["name"]
        if not chosen_topic.strip():
            raise UsageError("the topic is empty")
        if len(chosen_topic) > MAX_TOPIC:
            raise UsageError(f"topic is {len(chosen_topic)} characters; the limit is {MAX_TOPIC}")
        refs: list[str] = []
        for s in steps:
            for ref in (s["speaker_role_ref"], s["target_role_ref"]):
                if ref and ref not in refs:
                    refs.append(ref)
        for ref in role_map:
            if ref not in refs:
                raise UsageError(
                    f"--role {ref}=…: the flow has no role ref {ref!r} (it has: {', '.join(refs)})"
                )
        roles_snapshot: dict[str, Any] = {}
        for ref in refs:
            wanted = role_map.get(ref, ref)
            row = conn.execute(select(roles_t).where(roles_t.c.name == wanted)).mappings().first()
            if row is None and wanted.isdigit():
                row = (
                    conn.execute(select(roles_t).where(roles_t.c.id == int(wanted)))
                    .mappings()
                    .first()
                )
            if row is None:
                hint = f"--role {ref}=ROLE" if ref not in role_map else "`flowcli role add`"
                raise NotFoundError(f"role {wanted!r} (for {ref!r}) does not exist; use {hint}")
            roles_snapshot[ref] = {
                "role_id": row["id"],
                "name": row["name"],
                "prompt": row["prompt"],
            }
        snapshot = {
            "id": flow["id"],
            "name": flow["name"],
            "topic": flow.get("topic"),
            "type": flow["type"],
            "description": flow.get("description"),
            "version": flow.get("version"),
            "is_active": flow.get("is_active"),
            "termination_config": loads_json(flow.get("termination_config"), {}),
            "responder": loads_json(flow.get("responder"), None),
            "step_count": len(steps),
            "steps": steps,
        }
        result = conn.execute(
            insert(store.sessions_t).values(
                user_id=user_id,
                topic=chosen_topic,
                flow_template_id=flow_id,
                flow_snapshot=json.dumps(snapshot, ensure_ascii=False, default=str),
                roles_snapshot=json.dumps(roles_snapshot, ensure_ascii=False),
                status="not_started",
                current_step_id=None,
                current_round=0,
                executed_steps_count=0,
                created_at=now,
                updated_at=now,
                version=1,
                variables=vars_json,
                engine_state=EngineState(at=0).to_json(),
            )
        )
        session_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        for ref, snap in roles_snapshot.items():
            conn.execute(
                insert(store.session_roles_t).values(
                    session_id=session_id,
                    role_ref=ref,
                    role_id=snap["role_id"],
                    created_at=now,
                )
            )
    return session_id


# --- transitions ------------------------------------------------------------------------

_TRANSITIONS = {
    "start": ({"not_started"}, "running"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused", "failed"}, "running"),
    "cancel": ({"not_started", "running", "paused", "failed"}, "cancelled"),
}


def transition(db: Database, session_id: int, action: str) -> dict[str, Any]:
    """Apply a legal status change; anything else is refused with the reason.

    A cancel writes the owner's word for a forced stop: ``terminated`` on a database MRC
    owns (MRC does not know ``cancelled``), ``cancelled`` on flowcli's own.
    """
    from flowcli.engine.conventions import conventions_for

    allowed, target = _TRANSITIONS[action]
    if action == "cancel":
        target = conventions_for(db.owner).cancel_status
    with db.write() as conn:
        row = store.load_session(conn, session_id, for_update=True)
        status = row.status or "not_started"
        if status not in allowed:
            raise SessionStateError(
                f"cannot {action} session {session_id}: it is {status} "
                f"({action} applies to {', '.join(sorted(allowed))} sessions)"
            )
        values: dict[str, Any] = {"status": target}
        if action == "start" or (
            action == "resume" and row.current_step_id is None and status != "failed"
        ):
            first = parse_snapshot(row.flow_snapshot).first_step()
            values.update(current_step_id=first.id, current_round=1)
        if action == "resume" and status == "failed":
            # A failed session runs its failed step again, with fresh retries.
            state = EngineState.from_json(row.engine_state)
            values["error_reason"] = None
            values["engine_state"] = state.to_json()
            if row.current_step_id is None:
                first = parse_snapshot(row.flow_snapshot).first_step()
                values.update(current_step_id=first.id, current_round=row.current_round or 1)
        if action == "cancel":
            values["ended_at"] = store.utcnow()
            values["lease_owner"] = None
            values["lease_expires_at"] = None
        store.update_session(conn, row, values)
        return row.position()
