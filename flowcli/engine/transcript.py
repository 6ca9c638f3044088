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


def session_transcript(db: Database, session_id: int) -> list[dict[str, Any]]:
    """Every message of the session, oldest first: id, round, speaker, target, section,
    content, created_at (speaker and target are the flow's role refs)."""
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
        .order_by(m.c.id)
    )
    with db.read() as conn:
        store.load_session(conn, session_id)
        return [dict(r) for r in conn.execute(stmt).mappings()]
