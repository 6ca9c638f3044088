"""One adopted copy of the MRC fixture and one MRC server per test module.

A server start costs seconds on a busy machine, so a module's tests share one; each
test makes its own sessions on it. Where ../shared is absent the tests skip with the
reason (the fixture or MRC's backend is missing).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from tests.conftest import MRC_FIXTURE, WIDE_ENV
from tests.interop.harness import Shared
from tests.mrc_backend import MrcBackend, MrcUnavailable


def adopt(db: Path) -> None:
    result = CliRunner().invoke(
        app, ["--db", str(db), "db", "doctor", "--fix", "--yes", "--json"], env=WIDE_ENV
    )
    assert result.exit_code == 0, result.stdout


def start_mrc(mrc_venv: Path, db: Path, workdir: Path) -> MrcBackend:
    server = MrcBackend(mrc_venv, db, workdir)
    try:
        server.start()
    except MrcUnavailable as exc:
        pytest.skip(str(exc))
    return server


@pytest.fixture(scope="module")
def shared(mrc_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """An adopted copy of the MRC fixture with MRC's own backend serving it."""
    if not MRC_FIXTURE.is_file():
        pytest.skip(f"MRC fixture not found at {MRC_FIXTURE} (../shared is absent)")
    folder = tmp_path_factory.mktemp("interop")
    db = folder / "mrc.db"
    shutil.copyfile(MRC_FIXTURE, db)
    adopt(db)
    server = start_mrc(mrc_venv, db, folder / "mrc-work")
    yield Shared(db, server)
    server.stop()
