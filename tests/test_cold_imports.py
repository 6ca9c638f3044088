"""What a command imports decides how fast it starts: --help must not import SQLAlchemy or
Alembic, and reading logs must not import Alembic (or the flow-file libraries)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env


def imported_top_levels(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flowcli", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
    return names


def test_help_imports_neither_sqlalchemy_nor_alembic() -> None:
    names = imported_top_levels("--help")
    assert "typer" in names
    assert not names & {"sqlalchemy", "alembic", "pydantic", "yaml", "jinja2", "httpx", "textual"}


def test_logs_does_not_import_alembic(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    env = subprocess_env()
    subprocess.run(
        [sys.executable, "-m", "flowcli", "--db", str(db), "demo"],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    names = imported_top_levels("--db", str(db), "logs", "1")
    assert "sqlalchemy" in names
    assert not names & {"alembic", "pydantic", "yaml", "jinja2", "httpx", "textual"}
