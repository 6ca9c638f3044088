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
