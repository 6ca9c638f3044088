"""The built-in responder template, rendered without Jinja.

``DEFAULT_TEMPLATE`` is what the template responder renders when neither the flow nor
``--template`` gives one. ``render_builtin`` returns byte for byte what the sandboxed
Jinja render of it returns (a property test compares the two), without importing Jinja:
a one-step command should not pay for a template engine to join seven values.
Anything unusual (a value that is not plain text, a number or None; a missing name; a
very long result) returns None, and the caller renders with Jinja, which stays the
reference for every edge it alone decides (errors, limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_TEMPLATE = (
    "[{{ speaker }}{% if target %} → {{ target }}{% endif %}] {{ task_type }} on "
    '"{{ topic }}" (round {{ round }}, step {{ step }}'
    "{% if loop_iteration %}, loop {{ loop_iteration }}{% endif %})"
)

# The names it reads (a test holds this equal to the sandbox's own analysis of it).
BUILTIN_TEMPLATE_NAMES = frozenset(
    {"speaker", "target", "task_type", "topic", "round", "step", "loop_iteration"}
)
# Types whose text and truth Jinja's sandbox takes straight from Python (str(), bool()).
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
# Far below the sandbox's output limit: a longer result is left to Jinja to decide.
FAST_PATH_MAX_LENGTH = 100_000


def render_builtin(names: Mapping[str, Any]) -> str | None:
    """DEFAULT_TEMPLATE rendered with ``names``, or None when Jinja must render it."""
    try:
        speaker = names["speaker"]
        target = names["target"]
        task_type = names["task_type"]
        topic = names["topic"]
        round_ = names["round"]
        step = names["step"]
        loop_iteration = names["loop_iteration"]
    except KeyError:
        return None  # Jinja names the missing one in its error
    for value in (speaker, target, task_type, topic, round_, step, loop_iteration):
        if type(value) not in _PLAIN_TYPES:
            return None
    head = f"[{speaker} → {target}]" if target else f"[{speaker}]"
    loop = f", loop {loop_iteration}" if loop_iteration else ""
    text = f'{head} {task_type} on "{topic}" (round {round_}, step {step}{loop})'
    return text if len(text) <= FAST_PATH_MAX_LENGTH else None
