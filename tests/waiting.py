"""Waiting in tests: on a condition, with a generous deadline, never for a fixed time.

Imported by the kill-trial script too, so it depends on nothing but the standard library.
"""

from __future__ import annotations

import time
from typing import Any

WAIT_DEADLINE_S = 120.0  # generous: a busy 2-core CI machine can stall a process for seconds
_POLL_S = 0.005


def wait_until(
    condition: Any,
    what: str,
    *,
    proc: Any = None,
    deadline_s: float = WAIT_DEADLINE_S,
    stop_if_exited: bool = False,
) -> bool:
    """Wait for ``condition()`` to hold: the one way tests wait, never a fixed sleep.

    ``proc`` is a process the condition depends on. If it ends before the condition
    holds, the wait fails with its output, or, with ``stop_if_exited``, returns False
    so the caller can tell "it finished first" from "it got there" (kill tests).
    Returns True once the condition holds; fails after ``deadline_s``.
    """
    end = time.monotonic() + deadline_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            if stop_if_exited:
                return False
            raise AssertionError(f"the process ended before {what}: {proc.communicate()}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(_POLL_S)  # the gap between two checks of the condition
    return True
