"""The wheel carries what an installed flowcli needs: migrations and the example flows."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_wheel_contains_migrations_and_examples(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("flowcli-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "flowcli/migrations/env.py" in names
    assert "flowcli/migrations/script.py.mako" in names
    assert {"flowcli/migrations/versions/0001_mrc_tables.py", "flowcli/examples/demo.yaml"} <= names
    assert {"flowcli/examples/teaching_loop.yaml", "flowcli/examples/debate.yaml"} <= names
    # Every package of the source tree ships (pyproject lists them one by one).
    for init in sorted((REPO_ROOT / "flowcli").rglob("__init__.py")):
        assert init.relative_to(REPO_ROOT).as_posix() in names
