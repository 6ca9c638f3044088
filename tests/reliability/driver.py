"""A process that drives one session with ``run-next`` until it is finished.

    python -m tests.reliability.driver DB SESSION_ID [flowcli run-next options…]

Each ``run-next`` is a full command (its own Database, engine and connections), run in
this process to skip Python's start-up; several drivers are separate processes racing
on one file. Prints one JSON document: steps run, clear "busy" refusals, anything else.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.reliability.kill import flowcli

# What a loser may say when another process holds the step or the lock.
BUSY_WORDS = ("is busy", "locked", "changed by another process")


def drive(db: Path, session_id: int, extra: list[str]) -> dict[str, object]:
    ran = 0
    busy: list[str] = []
    other: list[str] = []
    deadline = time.time() + 240
    while time.time() < deadline:
        result = flowcli(db, "--busy-timeout", "30", "run-next", str(session_id), *extra)
        if result.exit_code == 0:
            ran += 1
            continue
        err = result.stderr
        if "is finished" in err:
            break
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            other.append(f"exception {result.exception!r}")
            break
        if any(word in err for word in BUSY_WORDS):
            busy.append(err)
            time.sleep(0.1)
            continue
        other.append(err)
        break
    return {"ran": ran, "busy": busy, "other": other}


def main() -> None:
    db, sid, *extra = sys.argv[1:]
    # --busy-timeout is a global option: it goes before the command.
    print(json.dumps(drive(Path(db), int(sid), extra)))


if __name__ == "__main__":
    main()
