"""All terminal output: the only module that builds Rich tables, panels and trees.

Builders take plain data (dicts, dataclasses) and write results to stdout; notes and
progress go to stderr. ``print_json`` writes exactly one JSON document and nothing else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from rich.console import Console


@lru_cache(maxsize=1)
def _out() -> Console:
    return Console(highlight=False, soft_wrap=False)


@lru_cache(maxsize=1)
def _err() -> Console:
    return Console(stderr=True, highlight=False)


def out_console() -> Console:
    # Rich binds sys.stdout lazily, so a cached console still follows redirection.
    return _out()


def err_console() -> Console:
    return _err()


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return str(value)


def to_json(data: Any, *, indent: int | None = 2) -> str:
    return json.dumps(data, default=json_default, indent=indent, ensure_ascii=False)


def print_json(data: Any) -> None:
    """stdout gets exactly one JSON document."""
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def print_jsonl(rows: Iterable[dict[str, Any]]) -> None:
    write = sys.stdout.write
    for row in rows:
        write(json.dumps(row, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A progress or confirmation note, on stderr so stdout stays for results."""
    from rich.markup import escape

    err_console().print(escape(message))


def warn(message: str) -> None:
    from rich.markup import escape

    err_console().print(f"[yellow]Warning:[/yellow] {escape(message)}")


def revision_table(revisions: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="flowcli migrations")
    table.add_column("revision")
    table.add_column("down")
    table.add_column("")
    table.add_column("description")
    for rev in revisions:
        marks = " ".join(m for m, on in (("head", rev.is_head), ("current", rev.is_current)) if on)
        table.add_row(rev.revision, rev.down_revision or "-", marks, rev.doc.splitlines()[0])
    out_console().print(table)
