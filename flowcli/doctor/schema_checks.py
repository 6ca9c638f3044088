"""The doctor's checks of the schema: flowcli's version table (which revision, decided by
flowcli.db.schema_state), who owns the database, and the drift from the models (missing
tables, columns and indexes, mismatched columns, others' tables).
"""

from __future__ import annotations

import json
from typing import Any

from flowcli.db.inspection import existing_tables, read_revisions
from flowcli.db.revisions import HEAD_REVISION, KNOWN_REVISIONS, VERSION_TABLE
from flowcli.db.schema_state import classify_revisions
from flowcli.doctor.findings import CheckResult, Finding, Fix
from flowcli.doctor.registry import (
    CheckFn,
    DoctorContext,
    check,
    drift_of,
    from_findings,
    owner_of,
    result,
)

# --- flowcli's version table ------------------------------------------------------------


@check("version_table", f"flowcli's version table ({VERSION_TABLE})", "version")
def check_version_table(ctx: DoctorContext) -> CheckResult:
    from flowcli.db.tables import METADATA

    conn = ctx.require_conn()
    tables = existing_tables(conn)
    owned = tables & set(METADATA.tables)
    state = classify_revisions(read_revisions(conn))
    ctx.facts["owned_tables"] = owned
    info: dict[str, Any] = {"current": None, "head": HEAD_REVISION, "state": state.kind}
    ctx.facts["revision"] = info
    if state.kind == "absent":
        if not owned:
            return result(
                "version_table",
                "error",
                "absent: no flowcli tables yet",
                [
                    Finding(
                        "version_table",
                        "error",
                        VERSION_TABLE,
                        "unversioned database without flowcli's tables"
                        + (
                            " (it holds other applications' tables)"
                            if tables - {"sqlite_sequence"}
                            else ""
                        )
                        + ": flowcli cannot run on it yet",
                        fix=Fix(
                            "safe",
                            "create flowcli's tables at head (other tables untouched)",
                            ["-- alembic upgrade head"],
                            applies_with="schema",
                        ),
                        data={"action": "upgrade"},
                    )
                ],
            )
        return result(
            "version_table",
            "error",
            "absent: unversioned (foreign) database",
            [
                Finding(
                    "version_table",
                    "error",
                    VERSION_TABLE,
                    f"unversioned database that already has {len(owned)} of flowcli's tables (e.g. "
                    "MRC's own database): flowcli refuses to run on it until it is adopted",
                    fix=Fix(
                        "safe",
                        "adopt it: stamp the revision its tables match and upgrade, or add "
                        "flowcli's missing tables and columns and stamp head",
                        [f"-- create {VERSION_TABLE}", "-- alembic stamp/upgrade"],
                        applies_with="schema",
                    ),
                    data={"action": "adopt"},
                )
            ],
        )
    if state.kind == "several":
        revisions = list(state.rows or ())
        info["current"] = revisions
        return result(
            "version_table",
            "error",
            f"{len(revisions)} rows",
            [
                Finding(
                    "version_table",
                    "error",
                    VERSION_TABLE,
                    f"{VERSION_TABLE} has {len(revisions)} rows "
                    f"({', '.join(revisions) or 'none'}): "
                    "several heads or a damaged ledger",
                    fix=Fix(
                        "manual",
                        "decide which revision the schema is at, then "
                        "`flowcli db stamp REV` (the doctor does not guess)",
                    ),
                )
            ],
        )
    current = state.current
    info["current"] = current
    if state.kind == "head":
        return result("version_table", "ok", f"at head ({current})")
    if state.kind == "behind":
        return result(
            "version_table",
            "error",
            f"behind: {current} < {HEAD_REVISION}",
            [
                Finding(
                    "version_table",
                    "error",
                    VERSION_TABLE,
                    f"the database is at revision {current}, behind head {HEAD_REVISION}: commands "
                    "refuse to run until it is upgraded",
                    fix=Fix(
                        "safe",
                        f"upgrade {current} → {HEAD_REVISION}",
                        ["-- alembic upgrade head"],
                        applies_with="schema",
                    ),
                    data={"action": "upgrade"},
                )
            ],
        )
    ctx.facts["unknown_revision"] = True
    return result(
        "version_table",
        "error",
        f"unknown revision {current}",
        [
            Finding(
                "version_table",
                "error",
                VERSION_TABLE,
                f"revision {current} is not one this flowcli knows ({', '.join(KNOWN_REVISIONS)}): "
                "the database was migrated by a newer flowcli, or revisions were deleted",
                fix=Fix(
                    "manual",
                    "upgrade flowcli to the version that wrote it; stamping over an "
                    "unknown revision would hide a real schema difference",
                ),
            )
        ],
    )


@check("owner", "who owns the database, and what flowcli added", "version")
def check_owner(ctx: DoctorContext) -> CheckResult:
    from flowcli.db.owner import OWNER_MRC, flowcli_additions, read_meta

    conn = ctx.require_conn()
    owner = owner_of(ctx)
    meta = read_meta(conn) or {}
    recorded = "recorded" if meta.get("owner") else "judged from its tables"
    if owner != OWNER_MRC:
        return result("owner", "ok", f"flowcli ({recorded})")
    added = flowcli_additions(conn)
    ctx.facts["flowcli_additions"] = added
    restored = _json_list(meta.get("restored"))
    adopted = meta.get("adopted_at")
    detail = (
        "MRC owns this database: flowcli follows MRC's conventions and adds nothing MRC's "
        "code can violate (docs/mrc.md). "
        + (f"Adopted {adopted}. " if adopted else "Not adopted yet. ")
        + ("flowcli added: " + ", ".join(added) + ". " if added else "flowcli added nothing. ")
        + (
            "flowcli recreated MRC's " + ", ".join(restored) + " as MRC defines it."
            if restored
            else ""
        )
    ).strip()
    return result(
        "owner",
        "info",
        f"mrc ({recorded}{', adopted ' + adopted if adopted else ''}); "
        f"{len(added)} flowcli addition(s)",
        [Finding("owner", "info", "owner", detail)],
    )


def _json_list(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


# --- schema against the models ------------------------------------------------------------


def _schema_check(name: str, kinds: tuple[str, ...], ok_text: str) -> CheckFn:
    def run(ctx: DoctorContext) -> CheckResult:
        findings = [f for f in drift_of(ctx).findings if f.check in kinds]
        if ctx.facts.get("unknown_revision"):
            for f in findings:
                if f.fix is not None and f.fix.risk == "safe":
                    # Repairing against models older than the database could do harm.
                    f.fix = Fix("manual", "not repaired while the revision is unknown")
        return from_findings(name, findings, f"{len(findings)} found", ok_text)

    return run


check("missing_table", "tables the models need", "schema")(
    _schema_check("missing_table", ("missing_table",), "all present")
)
check("missing_column", "columns the models need", "schema")(
    _schema_check("missing_column", ("missing_column",), "all present")
)
check("column_mismatch", "types and nullability that matter", "schema")(
    _schema_check("column_mismatch", ("column_mismatch",), "as the models say")
)
check("missing_index", "indexes flowcli's queries need", "schema")(
    _schema_check("missing_index", ("missing_index",), "all present")
)
check("extra_objects", "other tables and columns (never touched)", "schema")(
    _schema_check("extra_objects", ("extra_table", "extra_column"), "none")
)
