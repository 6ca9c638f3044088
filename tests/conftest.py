"""Shared fixtures: a CliRunner with a wide terminal and databases built in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from flowcli.cli.app import app

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
MRC_FIXTURE = SHARED / "fixtures" / "mrc" / "multi_role_chat.db"
EXAMPLES = REPO_ROOT / "examples"

# Rich must not wrap the output the tests compare.
WIDE_ENV = {"COLUMNS": "200", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1"}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLOWCLI_DB", raising=False)
    for key, value in WIDE_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("FLOWCLI_LLM_BASE_URL", "FLOWCLI_LLM_MODEL", "FLOWCLI_LLM_API_KEY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


class Cli:
    """Runs flowcli commands against one database file, like a user would."""

    def __init__(self, runner: CliRunner, db: Path) -> None:
        self.runner = runner
        self.db = db

    def __call__(self, *args: str, input: str | None = None, db: bool = True) -> Result:
        argv = (["--db", str(self.db)] if db else []) + [str(a) for a in args]
        return self.runner.invoke(app, argv, input=input, env=WIDE_ENV)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (
            f"flowcli {' '.join(args)} exited {result.exit_code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexc: {result.exception!r}"
        )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "flowcli.db"


@pytest.fixture
def cli(runner: CliRunner, db_path: Path) -> Cli:
    return Cli(runner, db_path)


@pytest.fixture
def mrc_copy(tmp_path: Path) -> Path:
    """A private copy of the real MRC database; skipped where ../shared is absent."""
    if not MRC_FIXTURE.is_file():
        pytest.skip(f"MRC fixture not found at {MRC_FIXTURE} (../shared is absent)")
    dest = tmp_path / "mrc-copy.db"
    shutil.copyfile(MRC_FIXTURE, dest)
    return dest


def flowcli_subprocess_cmd() -> list[str]:
    return [sys.executable, "-m", "flowcli"]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(WIDE_ENV)
    env.pop("FLOWCLI_DB", None)
    env.update(extra)
    return env


MakeCli = Callable[[Path], Cli]


@pytest.fixture
def make_cli(runner: CliRunner) -> MakeCli:
    return lambda path: Cli(runner, path)


class Unprivileged:
    """Runs flowcli in a subprocess where file permissions bite even when the tests run
    as root: root keeps its uid but loses the capabilities that bypass file modes."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def prefix(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux setpriv: cannot drop DAC capabilities")
        return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]

    def run(self, *args: str, **kwargs: Any) -> Any:
        import subprocess

        return subprocess.run(
            [*self.prefix(), *flowcli_subprocess_cmd(), *args],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            cwd=self.dir,
            timeout=120,
            **kwargs,
        )


@pytest.fixture
def unprivileged(tmp_path: Path) -> Unprivileged:
    return Unprivileged(tmp_path)


@pytest.fixture
def fake_llm():
    from tests.llm_server import FakeLLM

    server = FakeLLM().start()
    yield server
    server.stop()
