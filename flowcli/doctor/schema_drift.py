"""The doctor's comparison of the real schema, reflected, with flowcli's models (not with
a version stamp). Whether a table, column or index is missing is decided by
flowcli.db.schema_state, the same classifier the schema guard uses; this module turns
its answers, and the differences of type and nullability, into findings.

``detect_schema_drift`` returns findings with the SQL that repairs them. Only what the
models own is compared; other tables and extra columns are reported as information
and never touched. On a database MRC owns, a missing step log is recreated as MRC
defines it (flowcli.db.mrc_schema), and no unique index is asked for: MRC's own code
could violate it (docs/mrc.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Index, Table, inspect, text
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from flowcli.db.revisions import VERSION_TABLE
from flowcli.db.schema_state import MissingObject, index_is_present, missing_objects
from flowcli.db.tables import METADATA, SHARED_TABLES
from flowcli.doctor.findings import Finding, Fix

# Model-nullable columns that flowcli always fills in its own inserts: a NOT NULL on
# them in an existing database (MRC's messages.speaker_session_role_id) does no harm.
ALWAYS_WRITTEN = {
    ("messages", "speaker_session_role_id"),
    ("messages", "round_index"),
    ("messages", "section"),
    ("messages", "created_at"),
    ("sessions", "flow_snapshot"),
    ("sessions", "roles_snapshot"),
    ("sessions", "status"),
    ("sessions", "current_round"),
    ("sessions", "executed_steps_count"),
    ("sessions", "created_at"),
    ("sessions", "updated_at"),
    ("sessions", "version"),
    ("sessions", "engine_state"),
    ("sessions", "variables"),
    ("step_execution_logs", "round_index"),
    ("step_execution_logs", "loop_iteration"),
    ("step_execution_logs", "attempt_count"),
    ("step_execution_logs", "status"),
    ("step_execution_logs", "created_at"),
    ("step_execution_logs", "started_at"),
    ("step_execution_logs", "step_snapshot"),
    ("step_execution_logs", "context_snapshot"),
    ("step_execution_logs", "memory_usage_mb"),
    ("session_roles", "created_at"),
    ("roles", "created_at"),
    ("roles", "updated_at"),
    ("flow_templates", "created_at"),
    ("flow_templates", "updated_at"),
    ("flow_templates", "is_active"),
}
# Tables a database may have that belong to no one's schema drift (version ledgers).
LEDGER_TABLES = {VERSION_TABLE, "alembic_version", "sqlite_sequence"}


@dataclass
class Drift:
    findings: list[Finding] = field(default_factory=list)
    owned_present: set[str] = field(default_factory=set)
    columns: dict[str, set[str]] = field(default_factory=dict)


def _affinity(type_: Any) -> str:
    name = type(type_).__name__.upper()
    rendered = str(type_).upper() if not name.startswith("NULL") else ""
    for token, affinity in (
        ("INT", "integer"),
        ("BOOL", "boolean"),
        ("DATE", "datetime"),
        ("TIME", "datetime"),
        ("CHAR", "text"),
        ("TEXT", "text"),
        ("CLOB", "text"),
        ("STRING", "text"),
        ("FLOAT", "real"),
        ("REAL", "real"),
        ("DOUB", "real"),
        ("NUMERIC", "numeric"),
        ("DECIMAL", "numeric"),
        ("BLOB", "blob"),
        ("BYTEA", "blob"),
    ):
        if token in name or token in rendered:
            return affinity
    return "other"


def _length(type_: Any) -> int | None:
    value = getattr(type_, "length", None)
    return value if isinstance(value, int) else None


def _by_name(indexes: set[Index]) -> list[Index]:
    # Table.indexes is a set, whose order changes from one run to the next: findings and
    # repair statements come in a stable order.
    return sorted(indexes, key=lambda index: str(index.name))


def compile_create_table(table: Table, dialect: Any) -> list[str]:
    statements = [str(CreateTable(table).compile(dialect=dialect)).strip()]
    statements += [
        str(CreateIndex(ix).compile(dialect=dialect)).strip() for ix in _by_name(table.indexes)
    ]
    return statements


def compile_add_column(table: str, column: Column[Any], dialect: Any) -> str:
    spec = str(CreateColumn(column).compile(dialect=dialect)).strip()
    return f'ALTER TABLE "{table}" ADD COLUMN {spec}'


def _has_duplicates(conn: Connection, index: Index) -> bool:
    names = [f'"{c.name}"' for c in index.columns]
    table = index.table
    assert table is not None
    not_null = " AND ".join(f"{n} IS NOT NULL" for n in names)
    cols = ", ".join(names)
    row = conn.execute(
        text(
            f'SELECT 1 FROM "{table.name}" WHERE {not_null} '
            f"GROUP BY {cols} HAVING count(*) > 1 LIMIT 1"
        )
    ).first()
    return row is not None


def _missing_table_fix(name: str, table: Table, dialect: Any, owner: str) -> Fix:
    from flowcli.db.mrc_schema import MRC_TABLE_DDL
    from flowcli.db.owner import OWNER_MRC

    if owner == OWNER_MRC and name in SHARED_TABLES:
        if name in MRC_TABLE_DDL and dialect.name == "sqlite":
            return Fix(
                "safe",
                f"create {name} as MRC defines it (its columns, foreign keys and indexes)",
                list(MRC_TABLE_DDL[name]),
                applies_with="schema",
            )
        return Fix(
            "manual",
            f"{name} is MRC's table and flowcli does not know MRC's definition of it well "
            "enough to recreate it: restore it from a backup of MRC's database",
        )
    return Fix(
        "safe",
        f"create {name} and its indexes from the models",
        compile_create_table(table, dialect),
        applies_with="schema",
    )


def detect_schema_drift(conn: Connection, owner: str | None = None) -> Drift:
    """Compare the database's real tables, columns and indexes with the models.

    ``owner`` (flowcli.db.owner) is read from the database when not given.
    """
    from flowcli.db.owner import OWNER_MRC, read_owner

    insp = inspect(conn)
    dialect = conn.dialect
    present = set(insp.get_table_names())
    owner = owner or read_owner(conn)
    drift = Drift()
    required = {name: [c.name for c in table.columns] for name, table in METADATA.tables.items()}
    reflected_columns = {
        name: {c["name"]: c for c in insp.get_columns(name)} for name in required if name in present
    }
    missing = set(missing_objects(required, reflected_columns))
    for name, table in METADATA.tables.items():
        if MissingObject(name) in missing:
            if name not in SHARED_TABLES and VERSION_TABLE not in present:
                # flowcli's own tables come with adoption (the version_table finding).
                continue
            drift.findings.append(
                Finding(
                    check="missing_table",
                    severity="error",
                    object=name,
                    detail=f"table {name} is missing: every command that "
                    f"{'logs a step' if name == 'step_execution_logs' else 'uses it'} fails "
                    "with 'no such table'",
                    fix=_missing_table_fix(name, table, dialect, owner),
                    data={"table": name},
                )
            )
            continue
        drift.owned_present.add(name)
        reflected = reflected_columns[name]
        drift.columns[name] = set(reflected)
        for column in table.columns:
            if MissingObject(name, column.name) in missing:
                addable = column.nullable or column.server_default is not None
                drift.findings.append(
                    Finding(
                        check="missing_column",
                        severity="error",
                        object=f"{name}.{column.name}",
                        detail=f"column {name}.{column.name} is missing: "
                        "flowcli reads and writes it",
                        fix=Fix(
                            "safe",
                            f"add the nullable column {name}.{column.name}",
                            [compile_add_column(name, column, dialect)],
                            applies_with="schema",
                        )
                        if addable
                        else Fix(
                            "manual",
                            f"{name}.{column.name} is NOT NULL without a default; add it "
                            "with a table rebuild after deciding its value for existing rows",
                        ),
                        data={"table": name, "column": column.name},
                    )
                )
                continue
            drift.findings.extend(_compare_column(name, column, dict(reflected[column.name])))
        for column_name in sorted(set(reflected) - {c.name for c in table.columns}):
            # Drift in a table flowcli shares (MRC's extra flow_steps columns): worth a
            # warning, never an error, never touched.
            drift.findings.append(
                Finding(
                    check="extra_column",
                    severity="warning",
                    object=f"{name}.{column_name}",
                    detail=f"{name}.{column_name} is not in flowcli's models; flowcli leaves it "
                    "alone (its own inserts need it to be nullable or defaulted)",
                )
            )
        drift.findings.extend(
            _compare_indexes(conn, insp, name, table, dialect, unique_ok=owner != OWNER_MRC)
        )
    for name in sorted(present - set(METADATA.tables) - LEDGER_TABLES):
        if name.startswith("sqlite_"):
            continue
        drift.findings.append(
            Finding(
                check="extra_table",
                severity="info",
                object=name,
                detail=f"table {name} belongs to another application; flowcli never touches it",
            )
        )
    return drift


def _compare_column(table: str, column: Column[Any], found: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    obj = f"{table}.{column.name}"
    if column.nullable and not found.get("nullable", True) and not column.primary_key:
        if (table, column.name) in ALWAYS_WRITTEN:
            out.append(
                Finding(
                    check="column_mismatch",
                    severity="warning",
                    object=obj,
                    detail=f"{obj} is NOT NULL here but nullable in flowcli's models; flowcli "
                    "always writes it, so this does not stop flowcli",
                )
            )
        else:
            out.append(
                Finding(
                    check="column_mismatch",
                    severity="error",
                    object=obj,
                    detail=f"{obj} is NOT NULL here, but flowcli writes NULL into it in some "
                    "steps: those inserts would fail",
                    fix=Fix(
                        "rebuild",
                        f"rebuild {table} with {column.name} nullable (not done "
                        "automatically: back up first and use a table rebuild)",
                    ),
                )
            )
    want, have = _affinity(column.type), _affinity(found["type"])
    if want != have and not (
        {want, have} <= {"integer", "boolean"} or {want, have} <= {"real", "numeric"}
    ):
        out.append(
            Finding(
                check="column_mismatch",
                severity="warning",
                object=obj,
                detail=f"{obj} is {found['type']} here, {column.type} in flowcli's models "
                f"({have} vs {want} values)",
            )
        )
    else:
        want_len, have_len = _length(column.type), _length(found["type"])
        if want_len and have_len and have_len < want_len:
            out.append(
                Finding(
                    check="column_mismatch",
                    severity="warning",
                    object=obj,
                    detail=f"{obj} is {found['type']} here, {column.type} in flowcli's models: "
                    "SQLite does not enforce the length, other databases would refuse "
                    f"values over {have_len} characters",
                )
            )
    return out


def _compare_indexes(
    conn: Connection, insp: Any, name: str, table: Table, dialect: Any, *, unique_ok: bool
) -> list[Finding]:
    have = [(tuple(ix["column_names"]), bool(ix.get("unique"))) for ix in insp.get_indexes(name)]
    for uc in insp.get_unique_constraints(name):
        have.append((tuple(uc["column_names"]), True))
    pk = insp.get_pk_constraint(name).get("constrained_columns") or []
    if pk:
        have.append((tuple(pk), True))
    out = []
    for index in _by_name(table.indexes):
        cols = tuple(c.name for c in index.columns)
        # Where a unique index is not flowcli's to add (MRC's database), any index on the
        # same columns serves flowcli's queries.
        unique = bool(index.unique) and unique_ok
        if index_is_present(cols, unique, have):
            continue
        if unique and _has_duplicates(conn, index):
            fix = Fix(
                "manual",
                f"rows of {name} repeat ({', '.join(cols)}); remove the "
                "duplicates, then create the unique index",
            )
        else:
            statement = str(CreateIndex(index).compile(dialect=dialect)).strip()
            if index.unique and not unique:
                statement = statement.replace("CREATE UNIQUE INDEX", "CREATE INDEX", 1)
            fix = Fix(
                "safe",
                f"create index {index.name}",
                [statement],
                applies_with="schema",
            )
        out.append(
            Finding(
                check="missing_index",
                severity="warning",
                object=str(index.name),
                detail=f"{'unique ' if unique else ''}index on {name}({', '.join(cols)}) is "
                "missing: "
                + (
                    "nothing stops a duplicate execution_order"
                    if unique
                    else "queries on it scan the table"
                ),
                fix=fix,
                data={"index": index.name},
            )
        )
    return out
