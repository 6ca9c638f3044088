"""Small widgets and helpers the screens share."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static


class Bar(Static):
    """A line or two of status text, repainted only when what it says changes (the live
    views set it on every refresh; an unchanged bar costs no layout and no repaint)."""

    def __init__(self, text: Text | str = "", **kwargs: object) -> None:
        self._shown = Text(text) if isinstance(text, str) else text
        super().__init__(self._shown, **kwargs)  # type: ignore[arg-type]

    def show(self, text: Text) -> None:
        if text != self._shown:
            self._shown = text
            self.update(text)


def gone(screen: Screen[Any]) -> bool:
    """The screen was closed, or the app is closing, while a worker read for it: its
    result has nowhere to go."""
    return not screen.is_mounted or screen.app.return_code is not None


def when_shown(update: Callable[..., None]) -> Callable[..., None]:
    """For a screen's method that shows what a worker read: skipped once the screen is
    gone, and quiet if the screen is taken down while it runs. Such methods only query
    widgets the screen composed for its whole life, so a missing one means teardown."""

    @functools.wraps(update)
    def wrapper(screen: Any, *args: Any) -> None:
        if gone(screen):
            return
        with contextlib.suppress(NoMatches):
            update(screen, *args)

    return wrapper
