"""How the doctor's checks are declared, registered and ordered, and the facts they share.

A check is a function taking the DoctorContext (the target, its connection, the facts
earlier checks gathered) and returning a CheckResult; ``@check`` registers it. The
checks live in file_checks.py, schema_checks.py, session_checks.py and storage.py;
examine.py imports them all and runs ``registered_checks()``, in group order whatever
order the modules were imported in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from flowcli.db.connection import DatabaseTarget
from flowcli.db.owner import read_owner
from flowcli.doctor.findings import CheckResult, Finding
from flowcli.doctor.schema_drift import detect_schema_drift

# The order checks run in: a group needs what the groups before it established.
GROUPS = ("file", "version", "schema", "state", "storage")


@dataclass
class DoctorContext:
    target: DatabaseTarget
    full: bool = False
    conn: Connection | None = None
    # Set by a check when the database cannot be examined at all (exit code 2).
    unexaminable: str | None = None
    # Set when later checks should not run (a damaged file, an empty one).
    stop_reason: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.target.is_sqlite

    def require_conn(self) -> Connection:
        assert self.conn is not None
        return self.conn


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    group: str
    run: Callable[[DoctorContext], CheckResult]
    sqlite_only: bool = False


REGISTRY: list[Check] = []


CheckFn = Callable[[DoctorContext], CheckResult]


def check(
    name: str, title: str, group: str, *, sqlite_only: bool = False
) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        REGISTRY.append(Check(name, title, group, fn, sqlite_only))
        return fn

    return register


def result(
    c: Check | str,
    status: str,
    summary: str,
    findings: list[Finding] | None = None,
) -> CheckResult:
    spec = c if isinstance(c, Check) else next(x for x in REGISTRY if x.name == c)
    return CheckResult(spec.name, spec.title, spec.group, status, summary, findings or [])


def from_findings(
    c: Check | str, findings: list[Finding], found: str, none: str = "none"
) -> CheckResult:
    """A check's result from what it found: the worst severity, and ``found`` as the
    summary (``none`` when it found nothing)."""
    return result(c, status_of(findings), found if findings else none, findings)


def status_of(findings: list[Finding]) -> str:
    for level in ("error", "warning", "info"):
        if any(f.severity == level for f in findings):
            return level
    return "ok"


def owner_of(ctx: DoctorContext) -> str:
    """Who owns the database (flowcli.db.owner), read once per examination."""
    if "owner" not in ctx.facts:
        ctx.facts["owner"] = read_owner(ctx.require_conn())
    return str(ctx.facts["owner"])


def registered_checks() -> list[Check]:
    """Every registered check, in the order they run (by group, then as registered)."""
    return sorted(REGISTRY, key=lambda c: GROUPS.index(c.group))


def drift_of(ctx: DoctorContext) -> Any:
    """The schema compared with the models, computed once per examination."""
    if "drift" not in ctx.facts:
        ctx.facts["drift"] = detect_schema_drift(ctx.require_conn(), owner_of(ctx))
    return ctx.facts["drift"]
