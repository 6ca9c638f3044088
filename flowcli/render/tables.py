"""Every table flowcli prints, in the shape that fits where it goes.

A table is declared once (its columns, each with a priority) and filled from plain rows
whose cells are Rich markup built from sanitised text (``render._esc``):
- on a terminal, it is a Rich table fitted to the width; when the width is short, whole
  columns of low priority are left out rather than every column squeezed to ``compl…``;
- past ``STREAM_AFTER`` rows it streams as aligned lines (the first rows show at once,
  through the pager, instead of after the whole table is built);
- into a pipe or a file, it is tab-separated rows under a header line, nothing cut.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowcli.render.output import out_console
from flowcli.render.safe_text import one_line

STREAM_AFTER = 1000
# A Rich table with the default box spends three characters a column and one more.
_PER_COLUMN = 3


@dataclass(frozen=True)
class Col:
    name: str
    justify: str = "left"
    # 0: always shown. Larger numbers are left out first when the terminal is narrow.
    priority: int = 0
    # Free text (a topic, an error): wraps in what is left instead of taking its width.
    flex: bool = False
    min_width: int = 12
    # The most a flex column may take on a terminal (a preview; the pipe gets it whole).
    max_width: int | None = None


def plain(cell: str) -> str:
    """The text of a markup cell, on one line (what a pipe gets)."""
    if "[" not in cell:
        return one_line(cell)
    from rich.text import Text

    return one_line(Text.from_markup(cell).plain)


def _cell_width(cell: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in plain_lines(cell)), default=0)


def plain_lines(cell: str) -> list[str]:
    if "[" not in cell:
        return cell.split("\n")
    from rich.text import Text

    return Text.from_markup(cell).plain.split("\n")


def show_table(
    columns: Sequence[Col],
    rows: Iterable[Sequence[str]],
    *,
    title: str | None = None,
    caption: str | None = None,
    empty: str | None = "no rows",
) -> int:
    """Print the rows as a table that fits; returns how many rows were printed."""
    console = out_console()
    if not console.is_terminal:
        return _write_tsv(columns, rows, empty=empty)
    iterator = iter(rows)
    head = list(itertools.islice(iterator, STREAM_AFTER))
    if not head:
        if empty:
            _note_empty(title, empty)
        return 0
    shown = choose_columns(columns, head, console.width)
    more = next(iterator, None)
    if more is None:
        _rich_table(columns, shown, head, title=title, caption=caption)
        return len(head)
    return _stream_lines(columns, shown, itertools.chain(head, [more], iterator), title, caption)


def _note_empty(title: str | None, empty: str) -> None:
    from flowcli.render import info

    info(f"{title}: {empty}" if title else empty)


def _natural_widths(columns: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[int]:
    from rich.cells import cell_len

    widths = [cell_len(c.name) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            w = _cell_width(cell)
            if w > widths[i]:
                widths[i] = w
    return widths


def choose_columns(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """Indexes of the columns to show at ``width``: drop the lowest-priority columns
    (the rightmost first among equals) until the rest fit at their needed widths."""
    natural = _natural_widths(columns, rows)

    def need(i: int) -> int:
        col = columns[i]
        if col.flex:
            return min(natural[i], max(col.min_width, len(col.name)))
        return natural[i]

    shown = list(range(len(columns)))
    while sum(need(i) + _PER_COLUMN for i in shown) + 1 > width:
        droppable = [i for i in shown if columns[i].priority > 0]
        if not droppable:
            break
        worst = max(droppable, key=lambda i: (columns[i].priority, i))
        shown.remove(worst)
    return shown


def _rich_table(
    columns: Sequence[Col],
    shown: list[int],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None,
    caption: str | None,
) -> None:
    from rich.table import Table

    natural = _natural_widths(columns, rows)
    table = Table(title=title, caption=caption)
    for i in shown:
        col = columns[i]
        if col.flex:
            table.add_column(
                col.name,
                justify=col.justify,  # type: ignore[arg-type]
                overflow="fold",
                min_width=min(natural[i], col.min_width),
                max_width=col.max_width,
            )
        else:
            table.add_column(
                col.name,
                justify=col.justify,  # type: ignore[arg-type]
                no_wrap=True,
                min_width=natural[i],
            )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    out_console().print(table)


def _stream_lines(
    columns: Sequence[Col],
    shown: list[int],
    rows: Iterable[Sequence[str]],
    title: str | None,
    caption: str | None,
) -> int:
    """Aligned lines, one per row, widths taken from the first rows: the first screenful
    is out (and the pager started) long before the last row is read."""
    from rich.text import Text

    console = out_console()
    head: list[Sequence[str]] = []
    iterator = iter(rows)
    head = list(itertools.islice(iterator, STREAM_AFTER))
    natural = _natural_widths(columns, head)
    widths = {i: natural[i] for i in shown}
    flex = [i for i in shown if columns[i].flex]
    fixed_total = sum(widths[i] + 2 for i in shown if i not in flex)
    room = max(0, console.width - fixed_total - 2 * len(flex))
    for i in flex:
        cap = columns[i].max_width or natural[i]
        widths[i] = max(min(columns[i].min_width, natural[i]), min(cap, room // len(flex)))
    if title:
        console.print(Text(title, style="bold"))

    def line(cells: list[Text]) -> Text:
        out = Text()
        for n, (i, cell) in enumerate(zip(shown, cells, strict=True)):
            cell = cell.copy()
            cell.truncate(widths[i], overflow="ellipsis")
            pad = widths[i] - cell.cell_len
            if columns[i].justify == "right":
                cell.pad_left(pad)
            elif n < len(shown) - 1:
                cell.pad_right(pad)
            if n:
                out.append("  ")
            out.append_text(cell)
        return out

    console.print(line([Text(columns[i].name, style="bold") for i in shown]), soft_wrap=True)
    count = 0
    for row in itertools.chain(head, iterator):
        cells = [Text.from_markup(" ".join(row[i].split("\n"))) for i in shown]
        console.print(line(cells), soft_wrap=True)
        count += 1
    if caption:
        console.print(Text(caption, style="dim"))
    return count


def _write_tsv(columns: Sequence[Col], rows: Iterable[Sequence[str]], *, empty: str | None) -> int:
    write = sys.stdout.write
    write("\t".join(c.name for c in columns) + "\n")
    count = 0
    for row in rows:
        write("\t".join(plain(cell) for cell in row) + "\n")
        count += 1
    sys.stdout.flush()
    if not count and empty:
        _note_empty(None, empty)
    return count


def tsv_fields(rows: Iterable[tuple[str, Any]]) -> None:
    """Key/value pairs as two tab-separated columns (a panel's content, in a pipe)."""
    write = sys.stdout.write
    for key, value in rows:
        write(f"{plain(str(key))}\t{plain(str(value))}\n")
