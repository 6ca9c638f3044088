"""Shell completion through Typer's (Click's) protocol, as the shells call it: the
``_FLOWCLI_COMPLETE`` variable with COMP_WORDS/COMP_CWORD (bash) or _TYPER_COMPLETE_ARGS
(zsh, fish), in a real subprocess of the installed flowcli."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

FLOW = """
name: complete-me
roles:
  A: {prompt: "You are A."}
steps:
  - {speaker_role_ref: A, task_type: comment, context_scope: none}
"""


def complete(shell: str, words: list[str], cwd: Path, **env: str) -> list[str]:
    """What flowcli answers the shell for the words typed so far (the last is partial)."""
    line = " ".join(["flowcli", *words])
    extra = {"_FLOWCLI_COMPLETE": f"complete_{shell}", **env}
    if shell == "bash":
        extra |= {"COMP_WORDS": line, "COMP_CWORD": str(len(words))}
    else:
        extra |= {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    proc = subprocess.run(
        [sys.executable, "-m", "flowcli"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=subprocess_env(**extra),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def values(shell: str, lines: list[str]) -> list[str]:
    if shell == "zsh":
        # Typer answers zsh with one `_arguments '*: :(("value":"help" …))'` line
        # (or `_files` when it has nothing): the values are the quoted keys.
        text = "\n".join(lines)
        return re.findall(r'"((?:[^"\\]|\\.)*)":', text) or re.findall(r"\(\(([^)]*)\)\)", text)
    if shell == "fish":
        return [line.split("\t", 1)[0] for line in lines]
    return lines


@pytest.fixture
def database(tmp_path: Path) -> Path:
    (tmp_path / "flow.yaml").write_text(FLOW, encoding="utf-8")
    env = subprocess_env()
    run = [sys.executable, "-m", "flowcli"]
    for args in (
        ["flow", "import", "flow.yaml"],
        ["session", "create", "--flow", "1"],
        ["session", "create", "--flow", "1"],
    ):
        subprocess.run([*run, *args], cwd=tmp_path, env=env, check=True, capture_output=True)
    return tmp_path


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_commands_options_and_ids_complete(shell: str, database: Path) -> None:
    names = values(shell, complete(shell, ["s"], database))
    assert "session" in names
    subs = values(shell, complete(shell, ["session", "d"], database))
    assert set(subs) >= {"delete", "diff"}
    opts = values(shell, complete(shell, ["session", "list", "--l"], database))
    assert "--limit" in opts
    ids = values(shell, complete(shell, ["session", "show", ""], database))
    assert ids[:2] == ["2", "1"]  # newest first, from the database
    flows = values(shell, complete(shell, ["session", "create", "--flow", ""], database))
    assert flows == ["1"]
    logs_ids = values(shell, complete(shell, ["run-next", ""], database))
    assert "1" in logs_ids


def test_click_spelling_of_the_instruction_works(database: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flowcli"],
        capture_output=True,
        text=True,
        cwd=database,
        env=subprocess_env(
            _FLOWCLI_COMPLETE="bash_complete", COMP_WORDS="flowcli ex", COMP_CWORD="1"
        ),
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["explain"]


def test_id_completion_never_creates_a_database(tmp_path: Path) -> None:
    assert [v for v in complete("bash", ["session", "show", ""], tmp_path) if v] == []
    assert not (tmp_path / "flowcli.db").exists()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_and_install_completion_at_the_root(shell: str, tmp_path: Path) -> None:
    env = subprocess_env(SHELL=f"/bin/{shell}", HOME=str(tmp_path))
    run = [sys.executable, "-m", "flowcli"]
    shown = subprocess.run(
        [*run, "--show-completion"], capture_output=True, text=True, env=env, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert "_FLOWCLI_COMPLETE" in shown.stdout
    installed = subprocess.run(
        [*run, "--install-completion"], capture_output=True, text=True, env=env, timeout=120
    )
    assert installed.returncode == 0, installed.stderr
    assert f"{shell} completion installed" in installed.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "flowcli" in p.name]
    assert written and "_FLOWCLI_COMPLETE" in written[0].read_text()


def test_groups_do_not_offer_their_own_completion_options(runner) -> None:
    from flowcli.cli.app import app

    for group in ("db", "session", "logs"):
        out = runner.invoke(app, [group, "--help"]).stdout
        assert "--install-completion" not in out and "--show-completion" not in out
