"""``db history``: flowcli's migrations, with head and current marked."""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import escaped
from flowcli.render.tables import Col, show_table


def revision_table(revisions: list[Any]) -> None:
    columns = [
        Col("revision"),
        Col("down", priority=2),
        Col("state"),
        Col("description", flex=True, min_width=20),
    ]
    rows = []
    for rev in revisions:
        marks = " ".join(m for m, on in (("head", rev.is_head), ("current", rev.is_current)) if on)
        rows.append(
            [
                escaped(rev.revision),
                escaped(rev.down_revision or "-"),
                marks,
                escaped(rev.doc.splitlines()[0]),
            ]
        )
    show_table(columns, rows, title="flowcli migrations")
