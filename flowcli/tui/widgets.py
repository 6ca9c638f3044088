"""Small widgets the screens share."""

from __future__ import annotations

from rich.text import Text
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
