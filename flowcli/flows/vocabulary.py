"""The words of a flow document: task types, flow types, context keywords, step aliases,
and the sizes of MRC's columns that bound names (shared by the model, its checks and the
store)."""

from __future__ import annotations

from typing import Literal, get_args

TASK_TYPES: tuple[str, ...] = (
    "ask_question",
    "answer_question",
    "review_answer",
    "question",
    "summarize",
    "evaluate",
    "suggest",
    "challenge",
    "support",
    "conclude",
    "comment",
)
FlowType = Literal["teaching", "review", "debate", "discussion", "interview", "other"]
FLOW_TYPES: tuple[str, ...] = get_args(FlowType)
CONTEXT_KEYWORDS: tuple[str, ...] = (
    "none",
    "all",
    "last_message",
    "last_round",
    "last_n_messages",
    "__TOPIC__",
)
# Short names accepted on input; export always writes the canonical (MRC column) name.
STEP_ALIASES: dict[str, str] = {
    "speaker": "speaker_role_ref",
    "target": "target_role_ref",
    "task": "task_type",
}
CONTEXT_PARAM_KEYS: tuple[str, ...] = ("n",)  # context_param.n: messages for last_n_messages
ROLE_REF_MAX = 50  # flow_steps.speaker_role_ref / target_role_ref are String(50)
ROLE_NAME_MAX = 100  # roles.name is String(100)

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
