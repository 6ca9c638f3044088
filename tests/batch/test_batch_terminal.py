"""On a terminal a batch asks first, and shows its progress (a real pseudo-terminal)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch.test_batch_kill import FLOW, many_sessions
from tests.conftest import subprocess_env
from tests.reliability.kill import flowcli_json

DEADLINE_S = 120.0


class Terminal:
    """``flowcli`` with stdin, stdout and stderr on a pty, read until a text appears."""

    def __init__(self, db: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        env = subprocess_env(COLUMNS="160", TERM="xterm")
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowcli", "--db", str(db), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE_S
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never saw {text!r}; saw {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    if text not in self.seen:
                        raise AssertionError(f"ended without {text!r}: {self.seen[-2000:]!r}")
                    break
                self.seen += chunk.decode("utf-8", "replace")
        return self.seen

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> int:
        try:
            while True:  # drain, so the child never blocks writing to a full terminal
                ready, _, _ = select.select([self.master], [], [], DEADLINE_S)
                if not ready:
                    break
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.seen += chunk.decode("utf-8", "replace")
            return self.proc.wait(timeout=DEADLINE_S)
        finally:
            os.close(self.master)


@pytest.mark.parametrize("answer", ["y", "n"])
def test_a_batch_asks_on_a_terminal(tmp_path: Path, answer: str) -> None:
    db = tmp_path / "tty.db"
    ids = many_sessions(db, FLOW, 3)
    term = Terminal(db, "session", "cancel", "--where", "topic != 's1'")
    term.expect("2 session(s) match")
    term.expect("Cancel 2 session(s)? [y/N]:")
    term.send(answer + "\n")
    code = term.finish()
    listed = {s["id"]: s["status"] for s in flowcli_json(db, "session", "list")}
    if answer == "y":
        assert code == 0, term.seen
        assert "batch 1 (cancel): 2 done of 2" in term.seen
        assert [listed[i] for i in ids] == ["cancelled", "not_started", "cancelled"]
    else:
        assert code == 1 and "aborted" in term.seen.lower()
        assert [listed[i] for i in ids] == ["not_started"] * 3
        assert flowcli_json(db, "batch", "list") == []


def test_progress_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    db = tmp_path / "progress.db"
    many_sessions(db, FLOW, 3)
    term = Terminal(db, "auto", "--where", "True", "--yes")
    term.expect("batch 1 (auto): 3 done of 3")
    assert term.finish() == 0
    assert "batch 1 auto" in term.seen and "3/3" in term.seen  # the progress bar's line
