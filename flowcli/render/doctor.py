"""The doctor's report: a table of what was found, then the repair plan, then the summary.

Findings and fixes are shown apart: the table says what is wrong (one row per finding,
and one row for every run of checks skipped for the same reason), the plan says what
``--fix`` would do, numbered, with its SQL on lines of its own under ``--dry-run``.
That keeps the report readable at 80 columns.
"""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import escaped, plural
from flowcli.render.messages import err_console
from flowcli.render.output import out_console
from flowcli.render.tables import Col, show_table

MARKS = {
    "ok": "[green]✓[/green]",
    "info": "[blue]i[/blue]",
    "warning": "[yellow]![/yellow]",
    "error": "[red]✗[/red]",
    "skipped": "[dim]-[/dim]",
}

_HOW = {"schema": "--fix", "sessions": "--fix-sessions"}


def _rows(report: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    checks = list(report.checks)
    i = 0
    while i < len(checks):
        check = checks[i]
        if check.findings:
            for finding in check.findings:
                rows.append(
                    [
                        MARKS.get(finding.severity, "?"),
                        escaped(check.title),
                        escaped(finding.detail),
                    ]
                )
            i += 1
            continue
        # A run of checks with the same status and the same words is one row.
        j = i + 1
        while (
            j < len(checks)
            and not checks[j].findings
            and checks[j].status == check.status
            and checks[j].summary == check.summary
        ):
            j += 1
        if j - i > 1:
            names = ", ".join(c.name for c in checks[i:j])
            title = f"{plural(j - i, 'check')}: {names}"
        else:
            title = check.title
        rows.append([MARKS.get(check.status, "?"), escaped(title), escaped(check.summary)])
        i = j
    return rows


def doctor_findings(report: Any) -> None:
    """The table of findings alone (shown before `--fix` asks)."""
    columns = [
        Col(""),
        Col("check", flex=True, min_width=16, max_width=40),
        Col("found", flex=True, min_width=24),
    ]
    show_table(columns, _rows(report), title=f"flowcli db doctor: {escaped(report.database)}")


def repair_plan(report: Any, *, with_sessions: bool, sql: bool, console: Any = None) -> int:
    """The repairs ``--fix`` (and ``--fix-sessions``) would make, numbered; with ``sql``
    each is followed by its statements, one per line, indented."""
    console = console or out_console()
    fixes = [
        f.fix
        for f in report.findings
        if f.fix is not None and f.fix.risk == "safe" and f.fix.applies_with in _HOW
    ]
    manual = [f for f in report.findings if f.fix is not None and f.fix.applies_with not in _HOW]
    seen: set[str] = set()
    count = 0
    if fixes:
        console.print("[bold]repair plan[/bold]")
    for fix in fixes:
        if fix.description in seen:
            continue
        seen.add(fix.description)
        count += 1
        skipped = fix.applies_with == "sessions" and not with_sessions
        how = _HOW[fix.applies_with]
        line = f"  {count}. {escaped(fix.description)} [dim]({how})[/dim]"
        if skipped:
            line += " [dim]— not with --fix alone[/dim]"
        console.print(line, soft_wrap=True)
        if sql:
            for statement in fix.sql:
                console.print(f"       {escaped(statement)}", soft_wrap=True, highlight=False)
    for finding in manual:
        assert finding.fix is not None
        console.print(
            f"  [yellow]by hand[/yellow] [{escaped(finding.fix.risk)}]: "
            f"{escaped(finding.fix.description)}",
            soft_wrap=True,
        )
    return count


def doctor_report(report: Any, *, plan_sql: bool = False, with_sessions: bool = False) -> None:
    doctor_findings(report)
    console = out_console()
    if not report.repairs:
        repair_plan(report, with_sessions=with_sessions, sql=plan_sql)
    rev = report.revision or {}
    console.print(
        f"revision: {escaped(rev.get('current') or 'none')} (head {escaped(rev.get('head'))}"
        + (f", {escaped(rev.get('state'))})" if rev.get("state") else ")")
    )
    if report.repairs:
        console.print("repairs made:")
        for action in report.repairs:
            console.print(f"  • {escaped(action)}", soft_wrap=True)
    if report.backup:
        console.print(
            f"backup: {escaped(report.backup)} (restore: stop flowcli, then copy it over "
            f"{escaped(report.database)} and delete any -wal/-shm files next to it)",
            soft_wrap=True,
        )
    line = report.summary_line()
    style = "green" if report.ok else "red"
    console.print(f"[{style}]{escaped(line)}[/{style}]")


def doctor_checks(checks: list[dict[str, str]]) -> None:
    columns = [
        Col("check"),
        Col("group", priority=2),
        Col("what it looks at", flex=True, min_width=20),
        Col("applies to", priority=1),
    ]
    rows = [
        [escaped(c["check"]), escaped(c["group"]), escaped(c["title"]), escaped(c["applies_to"])]
        for c in checks
    ]
    show_table(columns, rows, title="doctor checks, in the order they run")


def confirm_plan(report: Any, with_sessions: bool) -> None:
    """Before asking: what was found (stdout), then what will be done (stderr)."""
    from flowcli.render.output import before_prompt

    doctor_findings(report)
    before_prompt()
    err_console().print("[bold]The doctor will:[/bold]")
    seen: set[str] = set()
    for finding in report.fixable(with_sessions=with_sessions):
        assert finding.fix is not None
        if finding.fix.description in seen:
            continue
        seen.add(finding.fix.description)
        err_console().print(f"  • {escaped(finding.fix.description)}")
