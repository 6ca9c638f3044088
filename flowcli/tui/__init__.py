"""``flowcli tui``: a live, keyboard-first session debugger in the terminal (Textual).

Textual is an optional extra (``pip install 'flowcli[tui]'``); nothing outside this
package imports it, so every other command starts as fast as before. ``app`` holds the
application, ``screens`` its screens and dialogs, ``data`` the reads they make off the
UI thread, and ``views`` the Rich renderables they show.
"""

from __future__ import annotations

INSTALL_HINT = "pip install 'flowcli[tui]'"
# The newest executions and messages a session view holds; older ones are not shown.
# (Here rather than in data.py: the app needs it before its first frame, the reads after.)
DEFAULT_WINDOW = 1000


def require_textual() -> None:
    """Raise a one-line error naming the extra to install when Textual is missing."""
    from flowcli.errors import MissingExtraError

    try:
        import textual  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            f"flowcli tui needs Textual, which is not installed: {INSTALL_HINT}"
        ) from None
