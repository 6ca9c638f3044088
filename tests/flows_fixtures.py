"""The loop flows the tests share, written once.

Both have three roles and three steps: A asks B, B answers and jumps back to step 1
``max_loops`` times, then C closes the session, so an uninterrupted run executes
``[1, 2] * (max_loops + 1) + [3]``.

- ``loop_flow``: the engine's reference loop (A's question reads no context, C
  summarises everything), optionally with a template responder;
- ``long_loop_flow``: the loop the process-level tests drive for a long time (every
  question reads the last message, C concludes without context), optionally with a
  higher ``max_steps`` so a long run is not cut short.
"""

from __future__ import annotations

import json

from tests.helpers import ROLES


def expected_orders(max_loops: int) -> list[int]:
    """The step orders an uninterrupted run of either loop flow executes."""
    return [1, 2] * (max_loops + 1) + [3]


def loop_flow(max_loops: int, *, name: str = "loop", template: str | None = None) -> str:
    responder = f"responder:\n  type: template\n  template: {json.dumps(template)}\n"
    return (
        ROLES
        + f"""
name: {name}
{responder if template is not None else ""}steps:
  - {{speaker_role_ref: A, target_role_ref: B, task_type: ask_question, context_scope: none}}
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: last_message
    logic_config: {{next_step_order: 1, max_loops: {max_loops}}}
  - {{speaker_role_ref: C, task_type: summarize, context_scope: all}}
"""
    )


def long_loop_flow(max_loops: int, *, name: str, max_steps: int | None = None) -> str:
    termination = (
        f"termination_config: {{max_steps: {max_steps}}}\n" if max_steps is not None else ""
    )
    return (
        ROLES
        + f"""
name: {name}
{termination}steps:
  - speaker_role_ref: A
    target_role_ref: B
    task_type: ask_question
    context_scope: last_message
  - speaker_role_ref: B
    target_role_ref: A
    task_type: answer_question
    context_scope: last_message
    logic_config: {{next_step_order: 1, max_loops: {max_loops}}}
  - {{speaker_role_ref: C, task_type: conclude, context_scope: none}}
"""
    )


# The engine's reference loop: the body runs four times, then C ends the session.
LOOP_FLOW = loop_flow(3)
