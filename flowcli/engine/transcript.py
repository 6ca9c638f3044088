"""A session's dialogue as it was spoken: its messages in order, with role refs.

``session transcript`` renders these grouped by round; ``--json`` prints them as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from flowcli.db import session_store as store

if TYPE_CHECKING:
    from flowcli.db.connection import Database

TRANSCRIPT_FIELDS = ("id", "round", "speaker", "target", "section", "content", "created_at")


def session_transcript(
    db: Database, session_id: int, *, last: int | None = None, after_id: int | None = None
) -> list[dict[str, Any]]:
    """Every message of the session, oldest first: id, round, speaker, target, section,
    content, created_at (speaker and target are the flow's role refs).

    ``last`` keeps only the newest N and ``after_id`` only those with a greater id, so a
    live view of a long session reads what is new, not the whole dialogue each time.
    """
    m = store.messages_t
    speaker = store.session_roles_t.alias("speaker_sr")
    target = store.session_roles_t.alias("target_sr")
    stmt = (
        select(
            m.c.id,
            m.c.round_index.label("round"),
            speaker.c.role_ref.label("speaker"),
            target.c.role_ref.label("target"),
            m.c.section,
            m.c.content,
            m.c.created_at,
        )
        .select_from(
            m.outerjoin(speaker, speaker.c.id == m.c.speaker_session_role_id).outerjoin(
                target, target.c.id == m.c.target_session_role_id
            )
        )
        .where(m.c.session_id == session_id)
    )
    if after_id is not None:
        stmt = stmt.where(m.c.id > after_id)
    with db.read() as conn:
        store.load_session(conn, session_id)
        if last is not None:
            newest = conn.execute(stmt.order_by(m.c.id.desc()).limit(last)).mappings()
            return [dict(r) for r in reversed(list(newest))]
        return [dict(r) for r in conn.execute(stmt.order_by(m.c.id)).mappings()]
