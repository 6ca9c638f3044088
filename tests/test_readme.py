"""The README's walk-throughs run as written, in order, in a fresh directory (as
sqlite-utils tests its documentation): every line of every ```bash block runs in one
shell with the installed flowcli, and each must exit 0. ```sh blocks are illustrations
(a placeholder path, the developer's own tools) and are not run. `pip install` is the
step that made this environment, and `pytest` is this suite: both are skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, subprocess_env

FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            parts = [p.strip() for p in stripped.split("&&")]
            kept = [p for p in parts if not p.startswith(("pip ", "pytest"))]
            if kept:
                commands.append(" && ".join(kept))
    return commands


def test_the_readme_has_walk_throughs() -> None:
    commands = readme_commands()
    assert any(c.startswith("flowcli demo") for c in commands)
    assert any("session fork" in c for c in commands)
    assert any("examples/briefing.yaml" in c for c in commands)


@pytest.mark.slow
def test_readme_walk_throughs_run_as_written(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    lines = ["set -o pipefail"]
    for number, command in enumerate(readme_commands(), 1):
        lines.append(command)
        lines.append(
            f"rc=$?; if [ $rc -ne 0 ]; then echo {shlex.quote(f'README command {number}')}"
            f" failed with exit $rc: {shlex.quote(command)} >&2; exit 1; fi"
        )
    script = tmp_path / "walk.sh"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = subprocess_env()
    env.pop("TTY_COMPATIBLE")  # a user's pipe: `$(…)` and `| cut` see plain output
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The debugging walk-through really failed once, and its fork really finished.
    assert "failed, as expected" in proc.stdout
    assert "Summary for team" in proc.stdout
    assert (tmp_path / "flowcli.toml").is_file()
