"""A message as expressions and templates see it (``last``, the items of ``messages``).

Its own module so the engine can hand messages to a responder without importing the
expression sandbox (and Jinja) when no expression or user template needs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MessageView:
    """One message as expressions and templates see it (``last``, items of ``messages``)."""

    id: int
    speaker: str
    target: str | None
    content: str
    section: str | None
    round: int
