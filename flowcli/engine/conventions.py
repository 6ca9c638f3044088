"""How flowcli writes the columns MRC also writes, by the database's owner.

The co-tenancy rule (docs/mrc.md): on a database MRC owns, flowcli writes every row and
column as MRC would for the same event, except where MRC's behaviour is one of its
documented defects. Those conventions are decided here, once:

- ``messages.section`` holds MRC's label for the task type, not the task type;
- the round goes up by one after a ``summarize`` or ``conclude`` step;
- a finished session keeps ``current_step_id`` at its last step;
- a forced stop (``session cancel``) writes ``terminated``;
- a message replies to the session's newest message;
- a target role without a session role mapping leaves the message's target empty.

On flowcli's own databases flowcli keeps its own ways. ``content_summary`` is filled on
every database, as MRC computes it: harmless, and MRC's views read it.
"""

from __future__ import annotations

from typing import NamedTuple

# MRC's labels for its task types; any other task type is a discussion.
SECTION_LABELS = {
    "ask_question": "提问阶段",
    "answer_question": "回答阶段",
    "review_answer": "点评阶段",
    "question": "质疑阶段",
    "summarize": "总结阶段",
    "evaluate": "评估阶段",
    "suggest": "建议阶段",
    "challenge": "挑战阶段",
    "support": "支持阶段",
    "conclude": "结论阶段",
}
OTHER_SECTION_LABEL = "讨论阶段"
SUMMARY_LIMIT = 100


def content_summary(content: str) -> str:
    """The content itself up to 100 characters, else its first 97 and '...'."""
    if len(content) <= SUMMARY_LIMIT:
        return content
    return content[: SUMMARY_LIMIT - 3] + "..."


class Conventions(NamedTuple):
    """The writing conventions of one database: MRC's (``mrc``) or flowcli's own."""

    mrc: bool = False

    def section(self, task_type: str) -> str:
        if not self.mrc:
            return task_type
        return SECTION_LABELS.get(task_type, OTHER_SECTION_LABEL)

    @property
    def rounds_end_on_summary(self) -> bool:
        return self.mrc

    @property
    def keeps_last_step(self) -> bool:
        return self.mrc

    @property
    def replies_to_newest(self) -> bool:
        return self.mrc

    @property
    def creates_target_role(self) -> bool:
        """flowcli creates a missing target's session role by role name (and stops when
        no such role exists); MRC leaves the target empty."""
        return not self.mrc

    @property
    def cancel_status(self) -> str:
        return "terminated" if self.mrc else "cancelled"


FLOWCLI = Conventions(mrc=False)
MRC = Conventions(mrc=True)


def conventions_for(owner: str) -> Conventions:
    from flowcli.db.owner import OWNER_MRC

    return MRC if owner == OWNER_MRC else FLOWCLI
