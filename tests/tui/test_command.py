"""`flowcli tui` as a command: in a real terminal it opens and quits; without a terminal, or
without Textual, it says so in one line; other commands never import Textual."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Cli, flowcli_subprocess_cmd, subprocess_env
from tests.test_cold_imports import imported_top_levels

DEADLINE_S = 90.0


def test_without_a_terminal_it_is_a_usage_error(cli: Cli) -> None:
    result = cli("tui")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: flowcli tui is a full-screen app and needs a terminal"


def test_without_textual_it_names_the_extra_to_install(tmp_path: Path) -> None:
    # Textual made unimportable, as after a plain `pip install flowcli`.
    code = (
        "import sys; sys.modules['textual'] = None; sys.argv = ['flowcli', 'tui'];"
        "from flowcli.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: flowcli tui needs Textual, which is not installed: pip install 'flowcli[tui]'"
    )
    assert not (tmp_path / "flowcli.db").exists()


def test_help_lists_it_and_no_other_command_imports_textual(cli: Cli) -> None:
    assert "  tui " in cli("--help", db=False).stdout
    assert "textual" not in imported_top_levels("--help")
    assert "textual" not in imported_top_levels("--db", str(cli.db), "session", "list")


def _drain(fd: int, seen: bytearray, until: bytes | None, deadline: float) -> None:
    """Read the terminal until ``until`` shows up (or, with None, until it closes)."""
    while until is None or until not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {until!r}; got {bytes(seen[-2000:])!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side closed
            chunk = b""
        if not chunk:
            assert until is None, f"the terminal closed before {until!r}"
            return
        seen.extend(chunk)


def _in_terminal(
    tmp_path: Path, *args: str, keys: bytes = b"", program: list[str] | None = None
) -> tuple[int, str]:
    """Run flowcli (or ``program``) in a pseudo-terminal of 100×30; type ``keys`` once it
    has drawn."""
    controller, terminal = pty.openpty()
    os.set_blocking(controller, True)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = subprocess_env(TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    proc = subprocess.Popen(
        [*(program or flowcli_subprocess_cmd()), *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    os.close(terminal)
    seen = bytearray()
    deadline = time.monotonic() + DEADLINE_S
    try:
        if keys:
            _drain(controller, seen, b"newest first", deadline)
            os.write(controller, keys)
        _drain(controller, seen, None, deadline)
        code = proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    return code, seen.decode("utf-8", "replace")


def test_in_a_terminal_it_opens_the_sessions_list_and_q_quits(cli: Cli, tmp_path: Path) -> None:
    cli.ok("demo")
    code, shown = _in_terminal(tmp_path, "--db", str(cli.db), "tui", keys=b"q")
    assert code == 0, shown[-2000:]
    assert "Why is the sky blue?" in shown  # the demo session's topic, in the list


# Runs flowcli after wrapping the terminal driver's write, to note what was imported
# when the first frame (the sessions screen's filter line) went to the terminal.
FIRST_FRAME_PROBE = """
import json, sys
from textual.drivers import linux_driver
out, args = sys.argv[1], sys.argv[2:]
write = linux_driver.LinuxDriver.write
def noting_write(self, data):
    if "status: all (s)" in data and not noting_write.done:
        noting_write.done = True
        noted = [m for m in sys.modules if m.startswith(("sqlalchemy", "textual.widgets"))]
        with open(out, "w") as f:
            json.dump(sorted(noted), f)
    return write(self, data)
noting_write.done = False
linux_driver.LinuxDriver.write = noting_write
sys.argv = ["flowcli", *args]
from flowcli.cli import main
main()
"""


def test_the_first_frame_waits_for_no_database_and_no_table(cli: Cli, tmp_path: Path) -> None:
    # What keeps `flowcli tui` quick to open (benchmarks/tui_start.py times it): the first
    # frame is drawn before SQLAlchemy, the schema check and the sessions table; the table
    # and the rows follow it.
    cli.ok("demo")
    noted = tmp_path / "imported.json"
    probe = [sys.executable, "-c", FIRST_FRAME_PROBE, str(noted)]
    code, shown = _in_terminal(tmp_path, "--db", str(cli.db), "tui", keys=b"q", program=probe)
    assert code == 0, shown[-2000:]
    assert "Why is the sky blue?" in shown  # the rows came after
    imported = json.loads(noted.read_text())
    assert "textual.widgets._header" in imported  # the probe saw the first frame
    assert not [m for m in imported if m.startswith("sqlalchemy")]
    assert "textual.widgets._data_table" not in imported
    assert "textual.widgets._footer" not in imported


def test_in_a_terminal_an_unknown_session_ends_with_one_error_line(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("db", "upgrade")
    code, shown = _in_terminal(tmp_path, "--db", str(cli.db), "tui", "99999")
    assert code == 1
    plain = re.sub(r"\x1b\[[0-9;?>$]*[A-Za-z]", "", shown)
    assert "Error: session 99999 does not exist" in plain
    assert "Traceback" not in shown


def test_every_key_is_in_the_docs() -> None:
    from flowcli.tui.app import FlowcliApp
    from flowcli.tui.screens.dialogs import BreakWhenScreen, ForkScreen, key_label
    from flowcli.tui.screens.diff import DiffScreen
    from flowcli.tui.screens.session import SessionScreen
    from flowcli.tui.screens.sessions import SessionsScreen
    from tests.conftest import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "tui.md").read_text(encoding="utf-8")
    missing = []
    for owner in (SessionsScreen, SessionScreen, DiffScreen, ForkScreen, BreakWhenScreen):
        for binding in [*owner.BINDINGS, *FlowcliApp.BINDINGS]:
            for key in key_label(binding.key).split(" / "):
                if f"`{key}`" not in doc:
                    missing.append(f"{owner.__name__}: {key}")
    assert missing == []
