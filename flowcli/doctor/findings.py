"""What the doctor reports: one CheckResult per check, each with its findings and fixes.

The JSON shape (documented in docs/doctor.md) is built from these dataclasses and is
kept stable: new keys may be added, none renamed or removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "error")
RISKS = ("safe", "rebuild", "manual")


@dataclass
class Fix:
    """How a finding is repaired. ``risk``: safe (applied by --fix), rebuild, or manual."""

    risk: str
    description: str
    sql: list[str] = field(default_factory=list)
    # Which repair applies it: schema (--fix), sessions (--fix-sessions), or None (manual).
    applies_with: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "risk": self.risk,
            "description": self.description,
            "sql": self.sql,
            "applies_with": self.applies_with,
        }


@dataclass
class Finding:
    check: str
    severity: str  # info | warning | error
    object: str
    detail: str
    fix: Fix | None = None
    # Data the repair needs (table names, session ids, …); not part of the JSON.
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "object": self.object,
            "detail": self.detail,
            "fix": self.fix.to_json() if self.fix else None,
        }

    @property
    def key(self) -> tuple[str, str]:
        return (self.check, self.object)


@dataclass
class CheckResult:
    name: str
    title: str
    group: str
    status: str  # ok | info | warning | error | skipped
    summary: str
    findings: list[Finding] = field(default_factory=list)
    duration_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "title": self.title,
            "group": self.group,
            "status": self.status,
            "summary": self.summary,
            "duration_ms": self.duration_ms,
        }


@dataclass
class DoctorReport:
    database: str
    revision: dict[str, Any]
    checks: list[CheckResult]
    examinable: bool = True
    backup: str | None = None
    repairs: list[str] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    strict: bool = False

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.checks for f in c.findings]

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def ok(self) -> bool:
        if not self.examinable:
            return False
        if self.count("error"):
            return False
        return not (self.strict and self.count("warning"))

    def fixable(self, with_sessions: bool = False) -> list[Finding]:
        allowed = {"schema", "sessions"} if with_sessions else {"schema"}
        return [
            f
            for f in self.findings
            if f.fix is not None and f.fix.risk == "safe" and f.fix.applies_with in allowed
        ]

    def summary_line(self) -> str:
        errors, warnings = self.count("error"), self.count("warning")
        parts = [
            f"{errors} error{'s' if errors != 1 else ''}",
            f"{warnings} warning{'s' if warnings != 1 else ''}",
        ]
        line = ", ".join(parts)
        schema = len(self.fixable())
        sessions = len(self.fixable(with_sessions=True)) - schema
        extra = []
        if schema:
            extra.append(f"{schema} fixable with --fix")
        if sessions:
            extra.append(f"{sessions} with --fix-sessions")
        return line + ("; " + ", ".join(extra) if extra else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "database": self.database,
            "examinable": self.examinable,
            "revision": self.revision,
            "summary": {
                "errors": self.count("error"),
                "warnings": self.count("warning"),
                "info": self.count("info"),
                "line": self.summary_line(),
            },
            "checks": [c.to_json() for c in self.checks],
            "findings": [f.to_json() for f in self.findings],
            "backup": self.backup,
            "repairs": self.repairs,
            "unresolved": self.unresolved,
        }


__all__ = ["CheckResult", "DoctorReport", "Finding", "Fix", "asdict"]
