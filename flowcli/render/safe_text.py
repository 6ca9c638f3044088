"""The one sanitiser for text that reaches a terminal.

Anything flowcli shows comes, sooner or later, from somewhere it does not control: a
topic, a role name or a message in the database, a server's error body, a file name.
Written raw, an ESC byte can retitle the window, clear the screen or move the cursor,
and a bidi override (U+202E) can make text read backwards. ``visible`` turns every such
character into a harmless, visible stand-in, so the reader sees that it is there.
Machine outputs (``--json``, ``--jsonl``, ``--csv``) never pass through here: they keep
the exact bytes.
"""

from __future__ import annotations

import unicodedata
from typing import Any

# Bidi embeddings, overrides and isolates, plus the marks that steer them.
BIDI_CONTROLS = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c"]
)
# Line and paragraph separators break a line where the terminal does not expect it.
_SEPARATORS = frozenset(["\u2028", "\u2029", "\x85"])


def _stand_in(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures": ␛ for ESC, ␍ for CR
    if code == 0x7F:
        return "\u2421"  # ␡
    if code <= 0xFFFF:
        return f"<U+{code:04X}>"
    return f"<U+{code:X}>"


def _needs_stand_in(ch: str) -> bool:
    if ch in BIDI_CONTROLS or ch in _SEPARATORS:
        return True
    category = unicodedata.category(ch)
    # Cc: C0/C1 controls and DEL (ESC, CSI 0x9b, OSC 0x9d …); Cs: lone surrogates.
    return category in ("Cc", "Cs")


def visible(value: Any, *, keep_newlines: bool = True, keep_tabs: bool = True) -> str:
    """``value`` as text in which no character can steer the terminal.

    Newlines and tabs are kept by default (a message has lines); a single-line field
    (a tab-separated cell, an error line) asks for them to be shown as ␊ and ␉ too.
    """
    text = "" if value is None else str(value)
    if text.isascii() and text.isprintable():
        return text  # the common case, without a per-character walk
    out = []
    for ch in text:
        if (ch == "\n" and keep_newlines) or (ch == "\t" and keep_tabs):
            out.append(ch)
        elif _needs_stand_in(ch):
            out.append(_stand_in(ch))
        else:
            out.append(ch)
    return "".join(out)


def one_line(value: Any) -> str:
    """``visible`` for a field that must stay on one line (TSV cells, error lines)."""
    return visible(value, keep_newlines=False, keep_tabs=False)


# A field longer than this is cut before it reaches a widget or a terminal line: the
# layout work for text grows with its length, and nobody reads 100,000 characters there.
MAX_SHOWN_CHARS = 20_000


def clipped(value: Any, *, keep_newlines: bool = False, limit: int = MAX_SHOWN_CHARS) -> str:
    """``visible`` text for a widget: at most ``limit`` characters (an ellipsis says it
    was cut); newlines and tabs kept, or turned into spaces for a one-line field."""
    text = "" if value is None else str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if not keep_newlines:
        text = text.replace("\n", " ").replace("\t", " ")
    return visible(text) + ("…" if cut else "")


def clipped_line(value: Any, width: int) -> str:
    """``clipped`` on one line, whitespace collapsed, cut to ``width`` with an ellipsis."""
    text = " ".join(clipped(value, limit=max(width * 4, 64)).split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
