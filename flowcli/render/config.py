"""`flowcli config show`: each setting, its effective value and where it came from."""

from __future__ import annotations

from typing import Any

from flowcli.render.formatting import escaped
from flowcli.render.messages import info
from flowcli.render.tables import Col, show_table


def config_table(rows: list[dict[str, Any]], files: list[dict[str, str]]) -> None:
    columns = [
        Col("key"),
        Col("value", flex=True, min_width=12, max_width=50),
        Col("source", flex=True, min_width=12),
    ]
    cells = [
        [escaped(r["key"]), escaped("" if r["value"] is None else r["value"]), escaped(r["source"])]
        for r in rows
    ]
    show_table(columns, cells, title="flowcli settings")
    if not files:
        info("no config file found (flowcli config init writes ./flowcli.toml)")
