"""Run several flowcli commands in one process and print their results as JSON.

    python -m tests.reliability.batch '[["--db", "F", "session", "list"], …]'

The read-only tests run it under setpriv (file permissions bite even as root): one
unprivileged process for a whole matrix of commands instead of one per command.
"""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from flowcli.cli.app import app
from tests.reliability.kill import CLI_ENV


def main() -> None:
    results = []
    for argv in json.loads(sys.argv[1]):
        result = CliRunner().invoke(app, argv, env=CLI_ENV)
        exc = result.exception
        results.append(
            {
                "argv": argv,
                "exit_code": result.exit_code,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "exception": None if exc is None or isinstance(exc, SystemExit) else repr(exc),
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
