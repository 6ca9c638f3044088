"""What ``db prune``, ``restore-archive``, ``backup``, ``restore``, ``vacuum`` and ``size``
print: tables of plain data on stdout, progress on stderr."""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import cell_time, escaped
from flowcli.render.messages import err_console
from flowcli.render.output import out_console

SHOWN_SESSIONS = 20


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _rows_line(rows: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {table}" for table, n in rows.items() if n)


def prune_plan(data: dict[str, Any]) -> None:
    from rich.table import Table

    sessions = data["sessions"]
    console = out_console()
    if not sessions:
        console.print("nothing to prune: no session matches")
        return
    table = Table(title=f"db prune --dry-run ({data['mode']})")
    for col, justify in (
        ("session", "right"),
        ("flow", "right"),
        ("status", "left"),
        ("ended", "left"),
        ("logs", "right"),
        ("messages", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in sessions[:SHOWN_SESSIONS]:
        table.add_row(
            str(s["id"]),
            escaped(s["flow_id"]),
            escaped(s["status"]),
            cell_time(s["ended"]),
            f"{s['rows'].get('step_execution_logs', 0):,}",
            f"{s['rows'].get('messages', 0):,}",
        )
    console.print(table)
    if len(sessions) > SHOWN_SESSIONS:
        console.print(f"… and {len(sessions) - SHOWN_SESSIONS:,} more session(s)")
    console.print(
        f"would remove {_rows_line(data['rows'])} (about {human_bytes(data['estimated_bytes'])})"
        + (f"; archive: {escaped(data['archive'])}" if data.get("archive") else "; no archive")
    )


def prune_report(data: dict[str, Any]) -> None:
    console = out_console()
    what = "step logs of" if data["mode"] == "logs-only" else ""
    console.print(
        f"pruned {what} {data['session_count']:,} session(s) in {data['batches']:,} batch(es), "
        f"{data['elapsed_s']:.2f}s: {_rows_line(data['rows']) or 'no rows'}".replace("  ", " ")
    )
    if data.get("archive"):
        digest = str((data.get("manifest") or {}).get("sha256", "?"))[:16]
        console.print(f"archive: {escaped(data['archive'])} (verified; sha256 {digest}…)")
    for kept in data.get("kept", []):
        err_console().print(
            f"[yellow]kept[/yellow] session {kept['id']}: {escaped(kept['reason'])} (it is in the "
            "archive too; a restore skips it while it is here)"
        )


class PruneProgressDisplay:
    """A progress bar on stderr while a prune runs (only on a terminal)."""

    def __init__(self, enabled: bool, total_sessions: int) -> None:
        self.enabled = enabled
        self.total = total_sessions
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> PruneProgressDisplay:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("pruning"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} sessions"),
                TextColumn("{task.fields[rows]}"),
                TimeElapsedColumn(),
                console=err_console(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("prune", total=self.total, rows="")
        return self

    def update(self, event: Any) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=event.sessions_done,
                rows=f"{event.rows_done:,}/{event.rows_total:,} rows",
            )

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def restore_archive_report(data: dict[str, Any]) -> None:
    console = out_console()
    archive = data["archive"]
    state = "complete" if archive["complete"] else "ends in an interrupted batch (not deleted)"
    console.print(
        f"archive {escaped(archive['path'])}: {archive['sessions']:,} session(s) in "
        f"{archive['batches']:,} verified batch(es); {state}"
    )
    if data["dry_run"]:
        return
    for s in data["sessions"]:
        if s["status"] == "restored":
            line = f"session {s['archived_id']}: restored"
        elif s["status"] == "restored_new_ids":
            line = f"session {s['archived_id']}: restored as session {s['id']} (its ids were taken)"
        elif s["status"] == "skipped":
            line = f"session {s['archived_id']}: skipped, {s['reason']}"
        else:
            line = f"session {s['archived_id']}: NOT restored: {s['reason']}"
        if s["status"] != "skipped" and s.get("reason") and s["status"] != "not_restored":
            line += f" ({s['reason']})"
        console.print(escaped(line))
    console.print(
        f"{data['restored'] + data['restored_with_new_ids']:,} restored "
        f"({data['restored_with_new_ids']:,} under new ids), {data['skipped']:,} skipped, "
        f"{data['not_restored']:,} not restored"
    )


def size_report(data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{escaped(data['database'])}: {human_bytes(data['bytes'])}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("bytes", justify="right")
    for t in data["tables"]:
        table.add_row(escaped(t["table"]), f"{t['rows']:,}", human_bytes(t["bytes"]))
    console = out_console()
    console.print(table)
    if data.get("free_bytes") is not None:
        console.print(
            f"free pages: {human_bytes(data['free_bytes'])} ({data['free_share']:.0%} of the "
            "file; `flowcli db vacuum` gives them back)"
        )
    console.print(
        f"{data['sessions']:,} session(s), {human_bytes(data['bytes_per_session'])} per session; "
        f"{data['steps']:,} step execution(s), {human_bytes(data['bytes_per_step'])} per step"
    )
