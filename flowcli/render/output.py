"""Where a command's output goes, and how it is made to fit there.

On a terminal, output is Rich, fitted to the width, and paged through a pager once it
is longer than the screen (the pager starts as soon as a screenful is waiting, so rows
stream into it). Into a pipe or a file nothing is cut or hard-wrapped: tables become
tab-separated rows under a header line (as ``gh`` and ``sqlite-utils`` do), and the
console is wide enough that no line is broken. The per-command settings (pager, width,
quiet) are set once by the root command from flags, environment and config file.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
from typing import IO, Any

# A line in a pipe is never broken before this many characters; large enough for any
# field flowcli shows, small enough that Rich's measuring stays cheap.
PIPE_WIDTH = 1 << 16
DEFAULT_PAGER = "less -R"


class OutputSettings:
    """How this command writes its output: pager, width, quiet. (Plain classes here, not
    dataclasses, for the start-up: docs/architecture.md, "What a one-step command loads".)"""

    def __init__(
        self,
        pager: str | None = None,
        width: int | None = None,
        quiet: bool = False,
        paging_allowed: bool = True,
    ) -> None:
        self.pager = pager  # the command; None or "" means never page
        self.width = width  # forced terminal width (config `width`)
        self.quiet = quiet  # no notes or progress on stderr; warnings and errors still show
        self.paging_allowed = paging_allowed  # a command (`logs --follow`) may turn it off


class _RunState:
    """The output state of the running command (its console and pager)."""

    def __init__(self) -> None:
        self.settings = OutputSettings()
        self.console: Any = None
        self.gate: PagerGate | None = None


_state = _RunState()


def configure(settings: OutputSettings) -> None:
    """Set this command's output settings (called once by the root command)."""
    finish()
    _state.settings = settings


def settings() -> OutputSettings:
    return _state.settings


def disable_paging() -> None:
    """For output that never ends by itself (``--follow``): write straight through."""
    _state.settings.paging_allowed = False


def stdout_is_terminal() -> bool:
    """What Rich decides for stdout (so TTY_COMPATIBLE and FORCE_COLOR are honoured)."""
    from rich.console import Console

    return bool(Console(file=sys.stdout).is_terminal)


def _real_tty(stream: IO[str]) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def out_console() -> Any:
    """The console for this command's results on stdout."""
    if _state.console is None:
        _state.console = _make_console()
    return _state.console


def _console_class() -> Any:
    from rich.console import Console

    class QuietOnClosedPipe(Console):
        """Rich exits 1 when the reader goes away; flowcli stops quietly instead (the
        boundary turns this into exit 0, as ``cat`` does)."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return QuietOnClosedPipe


def _make_console() -> Any:
    Console = _console_class()  # noqa: N806 - a class

    s = _state.settings
    if not stdout_is_terminal():
        return Console(
            file=sys.stdout,
            width=PIPE_WIDTH,
            highlight=False,
            soft_wrap=False,
            no_color=True,
            emoji=False,
        )
    gate = None
    if s.pager and s.paging_allowed and _real_tty(sys.stdout):
        gate = PagerGate(s.pager, sys.stdout)
        _state.gate = gate
    target: Any = gate if gate is not None else sys.stdout
    return Console(
        file=target,
        force_terminal=True if gate is not None else None,
        width=s.width,
        highlight=False,
        soft_wrap=False,
        # Stored text shows as it is: `:warning:` in a topic stays those nine characters.
        emoji=False,
    )


def is_terminal() -> bool:
    return bool(out_console().is_terminal)


def layout_width() -> int:
    """The width to lay a picture out in (a timeline's bars): the screen's, or in a pipe
    the configured width, $COLUMNS, else 100."""
    console = out_console()
    if console.is_terminal:
        return int(console.width)
    if _state.settings.width:
        return _state.settings.width
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 100


def before_prompt() -> None:
    """Before asking a question on the terminal: what is held for the pager must be on
    the screen now (the findings come before the question), and nothing more is held."""
    gate = _state.gate
    if gate is not None and gate.proc is None and not gate.direct:
        gate.direct = True
        gate.real.write("".join(gate.pending))
        gate.pending = []
        gate.real.flush()


def finish() -> None:
    """End of a command: hand the rest to the pager and wait for it, or flush."""
    gate, _state.gate, _state.console = _state.gate, None, None
    if gate is not None:
        gate.close()


class PagerGate(io.TextIOBase):
    """Holds output until it is longer than the screen, then starts the pager and streams
    into it; output that fits is written to the terminal when the command ends."""

    def __init__(self, command: str, real: IO[str]) -> None:
        self.command = command
        self.real = real
        self.screen_lines = max(2, shutil.get_terminal_size().lines)
        self.pending: list[str] = []
        self.lines = 0
        self.proc: subprocess.Popen[str] | None = None
        self.direct = False  # the pager could not start: write straight through

    def isatty(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: str) -> int:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(text)  # BrokenPipeError when the reader quit: stop quietly
            return len(text)
        if self.direct:
            return self.real.write(text)
        self.pending.append(text)
        self.lines += text.count("\n")
        if self.lines >= self.screen_lines - 1:
            self._start()
        return len(text)

    def _start(self) -> None:
        try:
            argv = shlex.split(self.command)
            self.proc = subprocess.Popen(  # noqa: S603 - the user's own pager setting
                argv, stdin=subprocess.PIPE, text=True, encoding="utf-8", errors="replace"
            )
        except (OSError, ValueError):
            self.direct = True
            self.real.write("".join(self.pending))
            self.pending = []
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(self.pending))
        self.pending = []

    def flush(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.flush()
        elif self.direct:
            self.real.flush()

    def close(self) -> None:
        if self.proc is None:
            if self.pending:
                self.real.write("".join(self.pending))
                self.pending = []
            self.real.flush()
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait()


def pager_command(configured: str | None, env: dict[str, str] | None = None) -> str | None:
    """FLOWCLI_PAGER, then the config file's ``pager``, then $PAGER, then ``less -R``.

    An empty value at any level means: never page.
    """
    environ = os.environ if env is None else env
    for value in (environ.get("FLOWCLI_PAGER"), configured, environ.get("PAGER")):
        if value is not None:
            return value.strip() or None
    return DEFAULT_PAGER


def silence_stdout() -> None:
    """After the reader of stdout went away (``| head -1``): point stdout at /dev/null so
    the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
