"""The bug report's database (step_execution_logs dropped), repaired by flowcli, then used
by both MRC's own backend and flowcli; and adoption undone by `db downgrade base`."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcli.cli.app import app
from tests.conftest import MRC_FIXTURE, WIDE_ENV
from tests.interop.conftest import adopt, start_mrc
from tests.interop.harness import ONE_ENGINE, Shared


@pytest.fixture(scope="module")
def seed(mrc_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    if not MRC_FIXTURE.is_file():
        pytest.skip(f"MRC fixture not found at {MRC_FIXTURE} (../shared is absent)")
    folder = tmp_path_factory.mktemp("seed")
    db = folder / "seed.db"
    shutil.copyfile(MRC_FIXTURE, db)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE step_execution_logs")
    con.commit()
    con.close()
    refused = CliRunner().invoke(app, ["--db", str(db), "run-next", "51"], env=WIDE_ENV)
    assert refused.exit_code == 1
    assert "step_execution_logs" in refused.stderr and "flowcli db doctor --fix" in refused.stderr
    adopt(db)
    assert not list(folder.glob("seed.db-*")), "adoption left -wal/-shm/-journal files"
    server = start_mrc(mrc_venv, db, folder / "mrc-work")
    yield Shared(db, server)
    server.stop()


def test_session_51_runs_half_by_flowcli_half_by_mrc(seed: Shared) -> None:
    seed.ok("run-next", 51)
    seed.ok("run-next", 51)
    seed.mrc_steps(51, 3)
    seed.ok("auto", 51, "--quiet")
    assert seed.steps(51) == ONE_ENGINE[7]
    session = seed.mrc.session(51)
    assert session["status"] == "finished" and session["executed_steps_count"] == 9
    seed.assert_mrc_numbering_free(51)


def test_new_sessions_run_by_mrc_then_flowcli(seed: Shared) -> None:
    sid = seed.mrc_session(7)
    seed.mrc_steps(sid, 4)
    seed.ok("auto", sid, "--quiet")
    assert seed.steps(sid) == ONE_ENGINE[7]
    other = seed.mrc_session(7, start=False)
    seed.ok("auto", other, "--max-steps", 5, "--quiet")
    assert seed.mrc_continues(other)["status"] == "finished"
    assert seed.steps(other) == ONE_ENGINE[7]


def test_mrc_step_progress_reads_the_repaired_log(seed: Shared) -> None:
    sid = seed.mrc_session(7)
    seed.ok("run-next", sid)
    seed.mrc_steps(sid, 1)
    logs = seed.mrc.step_logs(sid)["logs"]
    assert [log["step_id"] for log in logs] == [21, 22]
