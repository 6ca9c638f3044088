"""The doctor's report: a table of checks, the summary line, the repair plan."""

from __future__ import annotations

from typing import Any

from flowcli.render import _esc, err_console, out_console

MARKS = {
    "ok": "[green]✓[/green]",
    "info": "[blue]i[/blue]",
    "warning": "[yellow]![/yellow]",
    "error": "[red]✗[/red]",
    "skipped": "[dim]-[/dim]",
}


def doctor_report(report: Any, *, plan_sql: bool = False) -> None:
    from rich.table import Table

    table = Table(title=f"flowcli db doctor: {_esc(report.database)}")
    table.add_column("", justify="center")
    table.add_column("check")
    table.add_column("found")
    table.add_column("fix")
    for check in report.checks:
        if not check.findings:
            table.add_row(MARKS.get(check.status, "?"), _esc(check.title), _esc(check.summary), "")
            continue
        for finding in check.findings:
            fix = ""
            if finding.fix is not None:
                how = {"schema": " (--fix)", "sessions": " (--fix-sessions)"}.get(
                    finding.fix.applies_with or "", ""
                )
                fix = f"[{finding.fix.risk}] {finding.fix.description}{how}"
                if plan_sql and finding.fix.sql:
                    fix += "\n" + "\n".join(finding.fix.sql)
            table.add_row(
                MARKS.get(finding.severity, "?"), _esc(check.title), _esc(finding.detail), _esc(fix)
            )
    out_console().print(table)
    rev = report.revision or {}
    out_console().print(
        f"revision: {_esc(rev.get('current') or 'none')} (head {_esc(rev.get('head'))}"
        + (f", {_esc(rev.get('state'))})" if rev.get("state") else ")")
    )
    if report.repairs:
        out_console().print("repairs made:")
        for action in report.repairs:
            out_console().print(f"  • {_esc(action)}")
    if report.backup:
        out_console().print(
            f"backup: {_esc(report.backup)} (restore: stop flowcli, then copy it over "
            f"{_esc(report.database)} and delete any -wal/-shm files next to it)"
        )
    line = report.summary_line()
    style = "green" if report.ok else "red"
    out_console().print(f"[{style}]{_esc(line)}[/{style}]")


def doctor_checks(checks: list[dict[str, str]]) -> None:
    from rich.table import Table

    table = Table(title="doctor checks, in the order they run")
    for col in ("check", "group", "what it looks at", "applies to"):
        table.add_column(col)
    for c in checks:
        table.add_row(c["check"], c["group"], _esc(c["title"]), c["applies_to"])
    out_console().print(table)


def confirm_plan(report: Any, with_sessions: bool) -> None:
    err_console().print("[bold]The doctor will:[/bold]")
    for finding in report.fixable(with_sessions=with_sessions):
        assert finding.fix is not None
        err_console().print(f"  • {_esc(finding.fix.description)}  ({_esc(finding.object)})")
