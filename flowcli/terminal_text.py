"""Stored text made safe to show on a terminal.

Messages, role refs and error texts come from databases and LLM replies: an escape
sequence among them could move the cursor, retitle the window or hide what follows.
``printable`` keeps what a person can read and shows every other character escaped.
"""

from __future__ import annotations

from typing import Any

# A field longer than this is cut before it reaches a widget or a terminal line: the
# layout work for text grows with its length, and nobody reads 100,000 characters there.
MAX_SHOWN_CHARS = 20_000


def printable(value: Any, *, keep_newlines: bool = False, limit: int = MAX_SHOWN_CHARS) -> str:
    """``value`` as text with control and other non-printable characters escaped
    (``\\x1b`` → ``\\x1b`` shown literally), newlines kept or turned into spaces, and
    at most ``limit`` characters (an ellipsis says it was cut)."""
    text = "" if value is None else str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\n" if keep_newlines else " ")
        elif ch == "\t":
            out.append("    " if keep_newlines else " ")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("…" if cut else "")


def one_line(value: Any, width: int) -> str:
    """``printable`` on one line, whitespace collapsed, cut to ``width`` with an ellipsis."""
    text = " ".join(printable(value, limit=max(width * 4, 64)).split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
