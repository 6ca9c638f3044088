"""What goes to stderr: progress notes, warnings, and the console that prints them.

stdout is kept for results (flowcli.render.output); everything here is for the person
watching, and ``--quiet`` silences the notes.
"""

from __future__ import annotations

from functools import lru_cache

from rich.console import Console

from flowcli.render.output import settings
from flowcli.render.safe_text import visible


@lru_cache(maxsize=1)
def _err() -> Console:
    # soft_wrap: a note or an error is one logical line; the terminal wraps it, Rich does
    # not break it (a path split at column 80 cannot be copied back).
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def err_console() -> Console:
    return _err()


def info(message: str) -> None:
    """A progress or confirmation note, on stderr so stdout stays for results."""
    from rich.markup import escape

    if settings().quiet:
        return
    err_console().print(escape(visible(message)))


def warn(message: str) -> None:
    from rich.markup import escape

    err_console().print(f"[yellow]Warning:[/yellow] {escape(visible(message))}")
