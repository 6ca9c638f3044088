"""How one value is shown in a table cell or a panel: escaped text, styled statuses,
local times, ages, counts and durations. Every view builds its cells with these.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flowcli.render.output import out_console
from flowcli.render.safe_text import visible


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 step``, ``2 steps``."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def panel(body: Any, **kwargs: Any) -> Any:
    """A Rich panel; in a pipe it hugs its content instead of filling a 65,536-wide line."""
    from rich.panel import Panel
    from rich.text import Text

    kwargs.setdefault("expand", out_console().is_terminal)
    for key in ("title", "subtitle"):
        # Rich parses a str title with emoji codes on (`:warning:` in a stored name would
        # turn into a glyph) and loads its emoji table to do it; the consoles have them off.
        if isinstance(kwargs.get(key), str):
            kwargs[key] = Text.from_markup(kwargs[key], emoji=False)
    return Panel(body, **kwargs)


STATUS_STYLES = {
    "completed": "green",
    "finished": "green",
    "running": "cyan",
    "skipped": "yellow",
    "failed": "red",
    "timeout": "red",
    "pending": "dim",
    "not_started": "dim",
    "paused": "yellow",
    "cancelled": "magenta",
    "terminated": "magenta",
}


def escaped(value: Any) -> str:
    """Stored text made safe for a terminal: sanitised, then escaped for Rich markup."""
    text = visible(value)
    if "[" not in text and not text.endswith("\\"):
        return text  # nothing Rich would escape (the common case, once per cell)
    from rich.markup import escape

    return escape(text)


def styled_status(value: str | None) -> str:
    style = STATUS_STYLES.get(value or "", "")
    text = escaped(value or "-")
    return f"[{style}]{text}[/{style}]" if style else text


def local_time(value: datetime) -> datetime:
    """A stored time (naive UTC) in this machine's zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone()


def zone_name() -> str:
    """This machine's zone as a table header shows it once: ``UTC``, ``CET``, ``UTC+05:30``."""
    now = datetime.now().astimezone()
    name = now.tzname() or ""
    if name.isalpha():
        return name
    offset = now.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"


def cell_time(value: Any) -> str:
    """A time in a table cell: local, without the zone (the header names it once)."""
    if isinstance(value, datetime):
        return local_time(value).strftime("%Y-%m-%d %H:%M:%S")
    return escaped(value or "")


def zoned_time(value: Any) -> str:
    """A time on its own (in a panel or a note): local, with the zone."""
    if isinstance(value, datetime):
        return f"{cell_time(value)} {zone_name()}"
    return escaped(value or "")


def timed(name: str) -> str:
    """A column header for times: ``started (CET)``."""
    return f"{name} ({zone_name()})"


def ago(value: Any, now: datetime | None = None) -> str:
    """A relative age: ``just now``, ``3 min ago``, ``5 h ago``, ``2 days ago``."""
    if not isinstance(value, datetime):
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    current = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = (current - value).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    if days < 60:
        return plural(days, "day") + " ago"
    return local_time(value).strftime("%Y-%m-%d")


def milliseconds(value: Any) -> str:
    return "" if value is None else f"{value} ms"
