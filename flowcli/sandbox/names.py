"""The names flows may read in expressions and templates, and the message they see.

``last`` and the items of ``messages`` are MessageView values; the engine builds them from
the session's messages. Attribute names are decided here, by type, before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

EXPRESSION_NAMES: frozenset[str] = frozenset(
    {"round", "step", "loop_iteration", "executed_steps", "topic", "vars", "last", "messages"}
)
TEMPLATE_NAMES: frozenset[str] = EXPRESSION_NAMES | {"speaker", "target", "task_type"}


@dataclass(frozen=True, slots=True)
class MessageView:
    """One message as expressions and templates see it (``last``, items of ``messages``)."""

    id: int
    speaker: str
    target: str | None
    content: str
    section: str | None
    round: int


MESSAGE_FIELDS = frozenset(field.name for field in fields(MessageView))
LOOP_ATTRIBUTES = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0"}
    | {"previtem", "nextitem", "cycle", "changed"}
)
PRIVATE_HINT = "names starting with '_' are private"
FORMAT_METHODS = frozenset({"format", "format_map"})
