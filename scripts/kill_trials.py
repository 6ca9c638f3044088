#!/usr/bin/env python3
"""The long kill -9 run: SIGKILL ``flowcli auto`` at random moments, check after each kill.

    python scripts/kill_trials.py --trials 500 [--loops 400] [--seed 1] [--db PATH]

After every kill: PRAGMA integrity_check is ok, execution_order has no gap and no
duplicate, one message per completed execution, executed_steps_count matches the logs,
nothing is left running. At the end every session is resumed to its end and compared
with an uninterrupted run of the same flow. Prints the tally (JSON with --json) and
exits 1 on any inconsistency. CI runs the short version: tests/reliability/test_kill.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reliability.kill import finish_and_compare, run_kill_trials  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=500, help="kills to perform")
    parser.add_argument("--loops", type=int, default=400, help="loop count of the flow")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the kill times")
    parser.add_argument("--min-delay", type=float, default=0.05, help="earliest kill (s)")
    parser.add_argument(
        "--after-start",
        type=float,
        default=0.4,
        help="latest kill, in seconds after the measured start-up time",
    )
    parser.add_argument("--db", type=Path, help="database file (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the tally as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flowcli-kill-") as tmp:
        db = args.db or Path(tmp) / "kill.db"

        def progress(tally) -> None:
            if tally.trials % 50 == 0:
                print(
                    f"  {tally.trials} trials, {tally.inconsistencies} inconsistencies",
                    file=sys.stderr,
                )

        tally, sessions = run_kill_trials(
            db,
            args.trials,
            loops=args.loops,
            seed=args.seed,
            min_delay=args.min_delay,
            after_start=args.after_start,
            progress=progress,
        )
        final = finish_and_compare(db, sessions, args.loops)
        if final:
            tally.inconsistencies += len(final)
            tally.problems.extend(final)
    summary = tally.summary()
    summary["resumed_sessions_match_uninterrupted_run"] = not final
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"trials: {tally.trials}  inconsistencies: {tally.inconsistencies}  "
            f"time: {tally.elapsed_s} s  start-up to the first step: "
            f"{tally.startup_s:.2f} s\n"
            f"kills before the first step: {tally.kills_before_first_step}  "
            f"kills mid-run: {tally.kills_mid_run}  steps completed: {tally.steps_completed}\n"
            f"sessions: {tally.sessions} (finished during the trials: "
            f"{tally.sessions_finished}); every session resumed to the same "
            f"{'sequence as an uninterrupted run' if not final else 'sequence: NO'}\n"
            f"machine: {summary['machine']}"
        )
        for problem in tally.problems[:20]:
            print(f"  problem: {problem}")
    return 1 if tally.inconsistencies else 0


if __name__ == "__main__":
    sys.exit(main())
