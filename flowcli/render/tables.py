"""Every table flowcli prints, in the shape that fits where it goes.

A table is declared once (its columns, each with a priority) and filled from plain rows
whose cells are Rich markup built from sanitised text (``render.formatting.escaped``):
- on a terminal, it is a Rich table fitted to the width; when the width is short, whole
  columns of low priority are left out rather than every column squeezed to ``compl…``;
- a long table streams as aligned lines instead (past ``STREAM_AFTER`` rows, or, for a
  table declared ``stream_past_screen``, past one screenful): the widths come from the
  first rows and the columns' declared widths, so the header and the first screen are
  written (and the pager started) as soon as those rows are read, not after all of them;
- into a pipe or a file, it is tab-separated rows under a header line, nothing cut.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flowcli.render.messages import info
from flowcli.render.output import out_console
from flowcli.render.safe_text import one_line

STREAM_AFTER = 1000
# A Rich table with the default box spends three characters a column and one more.
_PER_COLUMN = 3
# Lines a boxed table spends besides its rows: title, three rules, header, caption.
_FRAME_LINES = 6
# Streamed lines separate their cells with two spaces.
_GAP = 2
# After the first screen, streamed lines are written this many at a time (one write and
# no flush per line: a line each was most of the time a 10,000-row table took).
_BATCH = 200
# Styled cells rendered once and reused; a bound, since an error column can be all
# different texts.
_STYLED_CACHE = 4096


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
    # When a long table streams, its widths come from the first rows; a column whose
    # values grow later (an execution order, an id) keeps at least this much room.
    stream_width: int = 0


def plain(cell: str) -> str:
    """The text of a markup cell, on one line (what a pipe gets)."""
    if "[" not in cell:
        return one_line(cell)
    from rich.text import Text

    return one_line(Text.from_markup(cell, emoji=False).plain)


def plain_lines(cell: str) -> list[str]:
    if "[" not in cell:
        return cell.split("\n")
    from rich.text import Text

    return Text.from_markup(cell, emoji=False).plain.split("\n")


def _is_plain(cell: str) -> bool:
    """A cell with no markup and nothing a terminal treats specially: shown as it is."""
    return "[" not in cell and cell.isprintable()


def show_table(
    columns: Sequence[Col],
    rows: Iterable[Sequence[str]],
    *,
    title: str | None = None,
    caption: str | None = None,
    empty: str | None = "no rows",
    stream_past_screen: bool = False,
) -> int:
    """Print the rows as a table that fits; returns how many rows were printed.

    ``stream_past_screen``: a table that may be long (a session's logs) streams as
    soon as it is longer than the screen, so its first rows show at once.
    """
    console = out_console()
    if not console.is_terminal:
        return _write_tsv(columns, rows, empty=empty)
    iterator = iter(rows)
    limit = max(1, console.height - _FRAME_LINES) if stream_past_screen else STREAM_AFTER
    head = list(itertools.islice(iterator, limit))
    if not head:
        if empty:
            _note_empty(title, empty)
        return 0
    more = list(itertools.islice(iterator, 1))
    if not more:
        natural = _natural_widths(columns, head)
        shown = choose_columns(columns, natural, console.width)
        _rich_table(columns, shown, head, natural, title=title, caption=caption)
        return len(head)
    return _stream_lines(columns, head + more, iterator, title, caption)


def _note_empty(title: str | None, empty: str) -> None:

    info(f"{title}: {empty}" if title else empty)


def _natural_widths(columns: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's widest line (header included), in terminal cells."""
    from rich.cells import cell_len

    widths = [cell_len(c.name) for c in columns]
    styled: dict[str, int] = {}  # a styled cell (a status) repeats: measure it once
    for row in rows:
        for i, cell in enumerate(row):
            if _is_plain(cell):
                w = len(cell) if cell.isascii() else cell_len(cell)
            else:
                w = styled.get(cell, -1)
                if w < 0:
                    w = styled[cell] = max(
                        (cell_len(line) for line in plain_lines(cell)), default=0
                    )
            if w > widths[i]:
                widths[i] = w
    return widths


def choose_columns(columns: Sequence[Col], natural: Sequence[int], width: int) -> list[int]:
    """Indexes of the columns to show at ``width``: drop the lowest-priority columns
    (the rightmost first among equals) until the rest fit at their needed widths."""

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
    natural: Sequence[int],
    *,
    title: str | None,
    caption: str | None,
) -> None:
    from rich.table import Table

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


# --- long tables, streamed -------------------------------------------------------------


def _stream_widths(
    columns: Sequence[Col], shown: list[int], natural: Sequence[int], width: int
) -> dict[int, int]:
    """Widths for streamed lines from the first rows' natural widths: fixed columns as
    measured (or their declared ``stream_width``); flex columns start at their floor,
    then grow, from the left, to what the first rows needed (at most ``max_width``);
    the last column shown, when it is flex (an error), takes the rest of the line."""
    widths = {i: natural[i] for i in shown if not columns[i].flex}
    flex = [i for i in shown if columns[i].flex]
    room = width - sum(widths.values()) - _GAP * (len(shown) - 1)
    for i in flex:
        widths[i] = min(natural[i], max(columns[i].min_width, len(columns[i].name)))
        room -= widths[i]
    last = shown[-1]
    for i in flex:
        cap = columns[i].max_width
        want = (cap or width) if i == last else min(natural[i], cap or natural[i])
        grow = max(0, min(want - widths[i], room))
        widths[i] += grow
        room -= grow
    return widths


class _LineCells:
    """Cells as terminal text, ready to join into a line.

    Most cells are plain text (numbers, times, names) and are used as they are; a styled
    cell (a coloured status) is rendered by the console once per width and reused.
    """

    def __init__(self, console: Any) -> None:
        self.console = console
        self.styled: dict[tuple[str, int], tuple[str, int]] = {}

    def render(self, cell: str, width: int, cut: bool) -> tuple[str, int]:
        """(text for the terminal, its width); cut to ``width`` with ``…`` when ``cut``."""
        if _is_plain(cell):
            if cell.isascii():
                if cut and len(cell) > width:
                    return cell[: max(0, width - 1)] + "…", width
                return cell, len(cell)
            from rich.cells import cell_len

            size = cell_len(cell)
            if not cut or size <= width:
                return cell, size
        key = (cell, width if cut else -1)
        done = self.styled.get(key)
        if done is None:
            if len(self.styled) >= _STYLED_CACHE:
                self.styled.clear()
            done = self.styled[key] = self._render(cell, width, cut)
        return done

    def _render(self, cell: str, width: int, cut: bool) -> tuple[str, int]:
        from rich.text import Text

        # One line: newlines and tabs are white space here (a tab's width is the
        # terminal's guess); the sanitiser has already made other controls visible.
        flat = cell.replace("\n", " ").replace("\t", " ")
        text = Text.from_markup(flat, emoji=False) if "[" in flat else Text(flat)
        if cut:
            text.truncate(width, overflow="ellipsis")
        with self.console.capture() as captured:
            self.console.print(text, end="", soft_wrap=True)
        return captured.get(), text.cell_len


def _stream_lines(
    columns: Sequence[Col],
    head: list[Sequence[str]],
    rest: Iterator[Sequence[str]],
    title: str | None,
    caption: str | None,
) -> int:
    """Aligned lines, one per row, widths taken from the first rows: the header and the
    first screen are written (and flushed to the pager) before the rest is read."""
    from rich.markup import escape

    console = out_console()
    # What the first rows need, but at least the declared widths: a later row may be
    # wider (a larger order, the first error of a session that went well at first).
    natural = [
        max(w, col.stream_width, col.min_width if col.flex else 0)
        for w, col in zip(_natural_widths(columns, head), columns, strict=True)
    ]
    shown = choose_columns(columns, natural, console.width)
    widths = _stream_widths(columns, shown, natural, console.width)
    cells = _LineCells(console)
    last = shown[-1]
    screen = console.width

    def line(row: Sequence[str]) -> str:
        parts = []
        used = 0
        for i in shown:
            col = columns[i]
            width = widths[i]
            cut = col.flex
            if i == last and col.flex:
                width = max(1, min(width, screen - used))
            text, w = cells.render(row[i], width, cut)
            pad = width - w
            if pad > 0:
                if col.justify == "right":
                    text = " " * pad + text
                elif i != last:
                    text += " " * pad
            parts.append(text)
            used += max(width, w) + _GAP
        return "  ".join(parts).rstrip(" ")

    if title:
        console.print(f"[bold]{escape(title)}[/bold]", soft_wrap=True)
    header = [f"[bold]{escape(col.name)}[/bold]" for col in columns]
    # The header and a full screen, then a flush: the pager starts with the first screen
    # while the rest is still being read.
    written = 2 if title else 1
    screen_rows = list(itertools.islice(rest, max(0, console.height - written - len(head))))
    out = console.file
    out.write(line(header) + "\n")
    out.write("".join(line(row) + "\n" for row in itertools.chain(head, screen_rows)))
    out.flush()
    count = len(head) + len(screen_rows)
    while batch := list(itertools.islice(rest, _BATCH)):
        out.write("".join(line(row) + "\n" for row in batch))
        count += len(batch)
    out.flush()
    if caption:
        console.print(f"[dim]{escape(caption)}[/dim]", soft_wrap=True)
    return count


# --- pipes -----------------------------------------------------------------------------


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
