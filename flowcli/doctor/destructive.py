"""Schema commands that can lose data (``db downgrade``, ``db stamp``), made safe.

A downgrade drops what the revisions it undoes created. On flowcli's own database that
is data, so the command says what goes, asks (or needs ``--yes``) and first makes the
same verified backup as ``db doctor --fix``. On a database MRC owns flowcli drops only
what it added: revision 0001's downgrade there removes flowcli's indexes, never MRC's
tables or rows, and going to ``base`` also removes flowcli's version table, leaving
MRC's schema as it was before adoption. ``stamp`` rewrites flowcli's record of the
schema, after which a downgrade would drop the wrong things: it is confirmed and backed
up the same way when it changes an existing record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowcli.errors import SchemaError

if TYPE_CHECKING:
    from flowcli.db.connection import Database

# What each revision's downgrade removes, on flowcli's own database and on MRC's.
_REMOVED_BY: dict[str, tuple[str, str]] = {
    "0006": (
        "tables flowcli_batches, flowcli_batch_items (the record of batches)",
        "tables flowcli_batches, flowcli_batch_items (the record of batches)",
    ),
    "0005": (
        "column sessions.log_summary (what `db prune --logs-only` kept) and four look-up indexes",
        "column sessions.log_summary and flowcli's four look-up indexes",
    ),
    "0004": ("table flowcli_meta (the owner record)", "table flowcli_meta (the owner record)"),
    "0003": ("column flow_templates.responder", "column flow_templates.responder"),
    "0002": (
        "columns sessions.version, lease_owner, lease_expires_at, engine_state, variables, "
        "forked_from_session_id, forked_from_log_id (loop counters, leases, variables)",
        "columns sessions.version, lease_owner, lease_expires_at, engine_state, variables, "
        "forked_from_session_id, forked_from_log_id (flowcli's additions)",
    ),
    "0001": (
        "tables roles, flow_templates, flow_steps, sessions, session_roles, messages, "
        "step_execution_logs, WITH EVERY ROW",
        "flowcli's indexes on MRC's tables (MRC's tables and rows stay)",
    ),
}


@dataclass
class SchemaChangePlan:
    """What a downgrade or stamp will do, for the confirmation and the report."""

    command: str
    database: str
    owner: str
    current: str | None
    target: str
    removes: list[str] = field(default_factory=list)
    keeps: list[str] = field(default_factory=list)
    loses_data: bool = False

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.removes) or self.loses_data

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "database": self.database,
            "owner": self.owner,
            "current": self.current,
            "target": self.target,
            "removes": self.removes,
            "keeps": self.keeps,
        }


def _revision_target(revision: str, current: str | None) -> str | None:
    """The revision a relative or symbolic target means, or None for base."""
    from flowcli.db.revisions import KNOWN_REVISIONS

    if revision == "base":
        return None
    if revision in ("head", "heads"):
        return KNOWN_REVISIONS[-1]
    if revision.endswith("-1") and current in KNOWN_REVISIONS:
        index = KNOWN_REVISIONS.index(current)
        return KNOWN_REVISIONS[index - 1] if index > 0 else None
    return revision


def plan_downgrade(db: Database, revision: str) -> SchemaChangePlan:
    from flowcli.db import migrate
    from flowcli.db.owner import OWNER_MRC
    from flowcli.db.revisions import KNOWN_REVISIONS

    migrate.check_revision(revision)
    current = migrate.current_revision(db)
    owner = db.owner
    target = _revision_target(revision, current)
    plan = SchemaChangePlan("downgrade", db.target.display, owner, current, revision)
    if current is None:
        raise SchemaError(
            f"database {db.target.display} has no flowcli revision: there is nothing to downgrade"
        )
    if current not in KNOWN_REVISIONS:
        raise SchemaError(
            f"database {db.target.display} is at revision {current}, which this flowcli "
            "does not know: it will not guess what a downgrade would drop"
        )
    low = KNOWN_REVISIONS.index(target) + 1 if target is not None else 0
    high = KNOWN_REVISIONS.index(current)
    mrc = owner == OWNER_MRC
    for rev in reversed(KNOWN_REVISIONS[low : high + 1]):
        plan.removes.append(f"{rev}: {_REMOVED_BY[rev][1 if mrc else 0]}")
    if mrc:
        if target is None:
            plan.removes.append("table flowcli_alembic_version (flowcli's version record)")
        plan.keeps.append("every MRC table and row (flowcli never drops what it did not create)")
    plan.loses_data = bool(plan.removes)
    return plan


def plan_stamp(db: Database, revision: str) -> SchemaChangePlan:
    from flowcli.db import migrate
    from flowcli.db.schema import database_exists

    migrate.check_revision(revision)
    exists = database_exists(db)
    current = migrate.current_revision(db) if exists else None
    owner = db.owner if exists else "flowcli"
    plan = SchemaChangePlan("stamp", db.target.display, owner, current, revision)
    if current is not None and current != _revision_target(revision, current):
        plan.removes.append(
            f"flowcli's record of the schema ({current} → {revision}); later upgrades and "
            "downgrades then act on what the record says, not on what the database holds"
        )
        plan.loses_data = True
    return plan


def backup_before_change(db: Database) -> str:
    """The doctor's verified backup (SQLite: backup API + integrity_check; PostgreSQL:
    pg_dump), made before a schema command that can lose data."""
    from flowcli.maintenance.safety_copy import make_backup, pg_backup

    if db.is_sqlite and db.target.path is not None:
        return str(make_backup(db.target.path, db.busy_timeout))
    return str(pg_backup(db.url))


def downgrade_safely(db: Database, plan: SchemaChangePlan, *, backup: bool = True) -> str | None:
    """Back up, then downgrade as planned. Returns the backup's path (or None)."""
    from flowcli.db import migrate
    from flowcli.db.owner import OWNER_MRC

    saved = backup_before_change(db) if backup and plan.loses_data else None
    migrate.downgrade(db, plan.target)
    if plan.owner == OWNER_MRC and migrate.current_revision(db) is None:
        migrate.drop_version_table(db)
    return saved


def stamp_safely(db: Database, plan: SchemaChangePlan, *, backup: bool = True) -> str | None:
    from flowcli.db import migrate

    saved = backup_before_change(db) if backup and plan.loses_data else None
    migrate.stamp(db, plan.target)
    return saved
