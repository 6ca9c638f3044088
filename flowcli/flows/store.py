"""Flows and roles in the database: import (one transaction), export, list, show.

A flow file becomes a ``flow_templates`` row and its ``flow_steps``; roles it defines
are created or updated by name. Re-importing a name makes a new version unless
``replace`` is asked for, which rewrites the newest version in place while keeping
the step rows that sessions have run (they are retired, not deleted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, insert, select, update

from flowcli.db.json_text import loads_json
from flowcli.db.plain_schema import MODEL_COLUMNS
from flowcli.db.session_store import utcnow
from flowcli.db.tables import (
    flow_steps_table,
    flow_templates_table,
    roles_table,
    sessions_table,
    step_logs_table,
)
from flowcli.errors import FlowcliError, NotFoundError, UsageError

if TYPE_CHECKING:
    from flowcli.db.connection import Database
    from flowcli.flows.spec import FlowDocument

templates_t = flow_templates_table
steps_t = flow_steps_table
roles_t = roles_table
sessions_t = sessions_table
logs_t = step_logs_table

# A step's columns, as the models define them (a snapshot's step carries each).
STEP_FIELDS = MODEL_COLUMNS["flow_steps"]


@dataclass
class ImportResult:
    id: int
    name: str
    version: str | None
    replaced: bool
    steps: int
    roles_created: list[str] = field(default_factory=list)
    roles_updated: list[str] = field(default_factory=list)


def known_role_names(db: Database) -> set[str]:
    with db.read() as conn:
        return {r[0] for r in conn.execute(select(roles_t.c.name))}


def _next_version(previous: str | None) -> str:
    try:
        return str(int(previous or "1") + 1)
    except ValueError:
        return f"{previous}.1"


def _step_row(template_id: int, step: Any) -> dict[str, Any]:
    scope = step.context_scope
    logic = step.logic_config.model_dump(exclude_none=True) if step.logic_config else None
    return {
        "flow_template_id": template_id,
        "order": step.order,
        "speaker_role_ref": step.speaker_role_ref,
        "target_role_ref": step.target_role_ref,
        "task_type": step.task_type,
        "context_scope": json.dumps(scope) if isinstance(scope, list) else scope,
        "context_param": json.dumps(step.context_param) if step.context_param else None,
        "logic_config": json.dumps(logic) if logic else None,
        "description": step.description,
    }


def import_flow(db: Database, doc: FlowDocument, *, replace: bool = False) -> ImportResult:
    """Store a validated flow document, all or nothing."""
    now = utcnow()
    with db.write() as conn:
        created, updated = _upsert_roles(conn, {n: r.prompt for n, r in doc.roles.items()}, now)
        existing = conn.execute(
            select(templates_t.c.id, templates_t.c.version)
            .where(templates_t.c.name == doc.name)
            .order_by(templates_t.c.id.desc())
            .limit(1)
        ).first()
        values = {
            "name": doc.name,
            "topic": doc.topic,
            "type": doc.type,
            "description": doc.description,
            "is_active": doc.is_active,
            "termination_config": (
                json.dumps(doc.termination_config.model_dump(exclude_none=True))
                if doc.termination_config
                else None
            ),
            "responder": (
                json.dumps(doc.responder.model_dump(exclude_none=True)) if doc.responder else None
            ),
            "updated_at": now,
        }
        if existing is not None and replace:
            template_id = int(existing[0])
            version = doc.version or existing[1]
            conn.execute(
                update(templates_t)
                .where(templates_t.c.id == template_id)
                .values(**values, version=version)
            )
            _retire_steps(conn, template_id)
        else:
            version = doc.version or ("1" if existing is None else _next_version(existing[1]))
            if existing is not None and doc.version and doc.version == existing[1]:
                version = _next_version(existing[1])
            result = conn.execute(
                insert(templates_t).values(**values, version=version, created_at=now)
            )
            template_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        for step in doc.steps:
            conn.execute(insert(steps_t).values(**_step_row(template_id, step)))
    return ImportResult(
        id=template_id,
        name=doc.name,
        version=version,
        replaced=existing is not None and replace,
        steps=len(doc.steps),
        roles_created=created,
        roles_updated=updated,
    )


def _retire_steps(conn: Connection, template_id: int) -> None:
    """Remove a template's current steps; keep (as retired, order <= 0) those in use.

    Log rows reference steps by id and sessions run from snapshots holding those ids,
    so a step any session knows must stay; it leaves the flow by taking order -id.
    """
    rows = (
        conn.execute(
            select(steps_t.c.id).where(
                steps_t.c.flow_template_id == template_id, steps_t.c.order > 0
            )
        )
        .scalars()
        .all()
    )
    if not rows:
        return
    used = set(
        conn.execute(select(logs_t.c.step_id).where(logs_t.c.step_id.in_(rows)).distinct())
        .scalars()
        .all()
    )
    for snap in conn.execute(
        select(sessions_t.c.flow_snapshot).where(sessions_t.c.flow_template_id == template_id)
    ).scalars():
        data = loads_json(snap, {})
        for step in data.get("steps", []) if isinstance(data, dict) else []:
            if isinstance(step, dict) and step.get("id") in rows:
                used.add(step["id"])
    # Nothing may keep pointing at a step that leaves the flow.
    conn.execute(update(steps_t).where(steps_t.c.next_step_id.in_(rows)).values(next_step_id=None))
    for step_id in rows:
        if step_id in used:
            conn.execute(update(steps_t).where(steps_t.c.id == step_id).values(order=-step_id))
        else:
            conn.execute(delete(steps_t).where(steps_t.c.id == step_id))


def _upsert_roles(conn: Connection, roles: dict[str, str], now: Any) -> tuple[list[str], list[str]]:
    created: list[str] = []
    updated: list[str] = []
    for name, prompt in roles.items():
        current = conn.execute(
            select(roles_t.c.id, roles_t.c.prompt).where(roles_t.c.name == name)
        ).first()
        if current is None:
            conn.execute(
                insert(roles_t).values(name=name, prompt=prompt, created_at=now, updated_at=now)
            )
            created.append(name)
        elif current[1] != prompt:
            conn.execute(
                update(roles_t)
                .where(roles_t.c.id == current[0])
                .values(prompt=prompt, updated_at=now)
            )
            updated.append(name)
    return created, updated


# --- reading flows ----------------------------------------------------------------------


def flow_steps(conn: Connection, template_id: int) -> list[dict[str, Any]]:
    """The template's current steps (order >= 1) as snapshot-ready dicts."""
    rows = conn.execute(
        select(*[steps_t.c[f] for f in STEP_FIELDS])
        .where(steps_t.c.flow_template_id == template_id, steps_t.c.order > 0)
        .order_by(steps_t.c.order, steps_t.c.id)
    ).mappings()
    out = []
    for r in rows:
        step = dict(r)
        step["context_param"] = loads_json(step["context_param"], {})
        step["logic_config"] = loads_json(step["logic_config"], {})
        scope = step["context_scope"]
        if isinstance(scope, str) and scope.strip().startswith("["):
            parsed = loads_json(scope, None)
            if isinstance(parsed, list):
                step["context_scope"] = parsed
        out.append(step)
    return out


def template_row(conn: Connection, template_id: int) -> dict[str, Any]:
    row = (
        conn.execute(select(templates_t).where(templates_t.c.id == template_id)).mappings().first()
    )
    if row is None:
        raise NotFoundError(f"flow {template_id} does not exist")
    return dict(row)


def get_flow(db: Database, template_id: int) -> dict[str, Any]:
    with db.read() as conn:
        flow = template_row(conn, template_id)
        flow["termination_config"] = loads_json(flow.get("termination_config"), {})
        flow["responder"] = loads_json(flow.get("responder"), None)
        flow["steps"] = flow_steps(conn, template_id)
        flow["session_count"] = conn.execute(
            select(func.count())
            .select_from(sessions_t)
            .where(sessions_t.c.flow_template_id == template_id)
        ).scalar()
    return flow


def list_flows(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        counts: dict[int, int] = dict(
            conn.execute(
                select(steps_t.c.flow_template_id, func.count())
                .where(steps_t.c.order > 0)
                .group_by(steps_t.c.flow_template_id)
            ).all()
        )
        rows = conn.execute(
            select(
                templates_t.c.id,
                templates_t.c.name,
                templates_t.c.type,
                templates_t.c.version,
                templates_t.c.is_active,
                templates_t.c.topic,
                templates_t.c.created_at,
            ).order_by(templates_t.c.id)
        ).mappings()
        return [{**dict(r), "step_count": counts.get(r["id"], 0)} for r in rows]


def export_flow(db: Database, template_id: int) -> dict[str, Any]:
    """The flow as a canonical document (MRC's column names) that imports again."""
    flow = get_flow(db, template_id)
    refs: list[str] = []
    for step in flow["steps"]:
        for ref in (step["speaker_role_ref"], step["target_role_ref"]):
            if ref and ref not in refs:
                refs.append(ref)
        scope = step["context_scope"]
        for ref in scope if isinstance(scope, list) else []:
            if ref not in refs:
                refs.append(ref)
    with db.read() as conn:
        prompts = (
            dict(
                conn.execute(
                    select(roles_t.c.name, roles_t.c.prompt).where(roles_t.c.name.in_(refs))
                ).all()
            )
            if refs
            else {}
        )
    doc: dict[str, Any] = {"name": flow["name"]}
    for key in ("topic", "type", "description", "version"):
        if flow.get(key) not in (None, ""):
            doc[key] = flow[key]
    if flow.get("is_active") is False:
        doc["is_active"] = False
    if prompts:
        doc["roles"] = {name: {"prompt": prompts[name]} for name in refs if name in prompts}
    if flow["termination_config"]:
        doc["termination_config"] = flow["termination_config"]
    if flow["responder"]:
        doc["responder"] = flow["responder"]
    steps = []
    for step in flow["steps"]:
        out: dict[str, Any] = {
            "order": step["order"],
            "speaker_role_ref": step["speaker_role_ref"],
        }
        if step["target_role_ref"]:
            out["target_role_ref"] = step["target_role_ref"]
        out["task_type"] = step["task_type"]
        out["context_scope"] = step["context_scope"]
        param = _exportable_param(step["context_param"])
        if param:
            out["context_param"] = param
        if step["description"]:
            out["description"] = step["description"]
        logic = _exportable_logic(step["logic_config"])
        if logic:
            out["logic_config"] = logic
        steps.append(out)
    doc["steps"] = steps
    return doc


def _exportable_param(param: Any) -> dict[str, Any]:
    """MRC data may hold any keys in context_param; export the ones a flow file may have."""
    from flowcli.flows.spec import CONTEXT_PARAM_KEYS  # export is not on the hot path

    if not isinstance(param, dict):
        return {}
    return {key: param[key] for key in CONTEXT_PARAM_KEYS if key in param}


def _exportable_logic(logic: Any) -> dict[str, Any]:
    """MRC data may hold loose logic_config; export what the format can express."""
    if not isinstance(logic, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(logic.get("condition"), str):
        out["condition"] = logic["condition"]
    target, max_loops = logic.get("next_step_order"), logic.get("max_loops")
    if target is not None and max_loops is not None:
        try:
            out["next_step_order"] = int(target)
            out["max_loops"] = int(max_loops)
        except (TypeError, ValueError):
            pass
    if isinstance(logic.get("exit_condition"), dict):
        out["exit_condition"] = logic["exit_condition"]
    return out


# --- roles --------------------------------------------------------------------------------


def add_role(
    db: Database, name: str, prompt: str, *, update_existing: bool = False
) -> dict[str, Any]:
    name = name.strip()
    if not name:
        raise UsageError("a role needs a name")
    if len(name) > 100:
        raise UsageError(f"role name is {len(name)} characters; the limit is 100")
    if not prompt.strip():
        raise UsageError("a role needs a non-empty --prompt")
    now = utcnow()
    with db.write() as conn:
        current = conn.execute(select(roles_t.c.id).where(roles_t.c.name == name)).scalar()
        if current is not None:
            if not update_existing:
                raise FlowcliError(
                    f"role {name!r} already exists (id {current}); "
                    "use --update to change its prompt"
                )
            conn.execute(
                update(roles_t).where(roles_t.c.id == current).values(prompt=prompt, updated_at=now)
            )
            role_id = int(current)
        else:
            result = conn.execute(
                insert(roles_t).values(name=name, prompt=prompt, created_at=now, updated_at=now)
            )
            role_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    return get_role(db, str(role_id))


def get_role(db: Database, name_or_id: str) -> dict[str, Any]:
    with db.read() as conn:
        row = conn.execute(select(roles_t).where(roles_t.c.name == name_or_id)).mappings().first()
        if row is None and name_or_id.isdigit():
            row = (
                conn.execute(select(roles_t).where(roles_t.c.id == int(name_or_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"role {name_or_id!r} does not exist")
        return dict(row)


def list_roles(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [dict(r) for r in conn.execute(select(roles_t).order_by(roles_t.c.id)).mappings()]
