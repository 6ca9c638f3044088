"""A worker's progress lines (stderr) and its exit summary."""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import escaped
from flowcli.render.messages import err_console


def worker_event(event: dict[str, Any]) -> None:
    kind = event.get("event")
    who = str(event.get("worker", "")).rsplit(":", 1)[-1]
    if kind == "step":
        status = event.get("status")
        line = (
            f"[{who}] session {event['session']} #{event.get('execution_order')} "
            f"step {event.get('step')}: {status}"
        )
        if event.get("error"):
            line += f" ({event['error']})"
        if event.get("session_status") not in (None, "running"):
            line += f"; session {event['session_status']}"
    elif kind == "claimed":
        line = f"[{who}] claimed session {event['session']}"
    elif kind == "released":
        line = (
            f"[{who}] released session {event['session']} after {event['steps']} step(s) "
            f"({event['status']})"
        )
    elif kind == "left":
        line = f"[{who}] left session {event['session']}: {event['reason']}"
    else:
        line = f"[{who}] {kind}: {event.get('error', '')}"
    err_console().print(escaped(line), highlight=False)


def worker_summary(data: dict[str, Any]) -> None:
    err_console().print(
        f"worker {escaped(data['owner'])}: {data['steps']} step(s), "
        f"{data['failed_attempts']} failed attempt(s), {len(data['sessions_finished'])} "
        f"session(s) finished, {len(data['sessions_failed'])} failed, {data['claims']} claim(s) "
        f"in {data['elapsed_s']:.1f}s; stopped: {escaped(data['stop_reason'])}",
        highlight=False,
    )
    for error in data.get("errors", []):
        err_console().print(f"[red]error:[/red] {escaped(error)}")
