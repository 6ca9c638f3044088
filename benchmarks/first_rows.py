"""Time to the first row of a large `flowcli logs` on a terminal, against the time to
the whole output, measured in the same run (a ratio, not an absolute).

A session with N log rows (default 10,000) is built in a temporary SQLite file; then
`flowcli logs 1` runs on a pseudo-terminal with a tiny pager script that notes when its
first byte arrives and when its input ends.
"""

from __future__ import annotations

import argparse
import os
import pty
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(db: Path, rows: int) -> None:
    env = dict(os.environ, TTY_COMPATIBLE="")
    subprocess.run(
        [sys.executable, "-m", "flowcli", "--db", str(db), "demo"],
        check=True,
        capture_output=True,
        env=env,
    )
    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute("PRAGMA table_info(step_execution_logs)") if r[1] != "id"]
    template = con.execute(
        f"SELECT {', '.join(cols)} FROM step_execution_logs WHERE id = 1"
    ).fetchone()
    order = cols.index("execution_order")
    batch = []
    for n in range(rows):
        row = list(template)
        row[order] = 1000 + n
        batch.append(row)
    con.executemany(
        f"INSERT INTO step_execution_logs ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})",
        batch,
    )
    con.commit()
    con.close()


PAGER = """
import sys, time
first = None
for chunk in iter(lambda: sys.stdin.read(1), ""):
    if first is None:
        first = time.monotonic()
    sys.stdin.read()
    break
end = time.monotonic()
open(sys.argv[1], "w").write(f"{first} {end}")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "big.db"
        build(db, args.rows)
        pager = folder / "pager.py"
        pager.write_text(PAGER)
        marks = folder / "marks"
        env = dict(
            os.environ, LINES="40", COLUMNS="120", FLOWCLI_PAGER=f"{sys.executable} {pager} {marks}"
        )
        env.pop("TTY_COMPATIBLE", None)
        master, slave = pty.openpty()
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowcli", "--db", str(db), "logs", "1"],
            stdout=slave,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        os.close(slave)
        while True:
            try:
                if not os.read(master, 65536):
                    break
            except OSError:
                break
        proc.wait()
        first, end = (float(x) for x in marks.read_text().split())
        print(f"rows: {args.rows}")
        print(
            f"first row reached the pager after {first - start:.2f}s; "
            f"all rows after {end - start:.2f}s"
        )
        print(f"ratio first/all: {(first - start) / (end - start):.2f}")


if __name__ == "__main__":
    main()
