"""Number options that are finite and bounded, with every bound in one table.

Click's float ranges let ``nan`` through (every comparison with nan is false) and number
options had no upper bound, so ``--lease nan``, ``--retry-backoff inf`` or
``--concurrency 99999999999999999999`` reached the engine and hung, crashed or ate
memory. Float options are declared with ``parser=bounded_float(...)`` (Typer's public
``parser=`` hook; Typer vendors Click privately since 0.26), integer options with
``min=…, max=int_limit(...)`` (Click's IntRange: an integer cannot be nan, and shell
completion keeps working on id arguments). A bad value is a usage error (exit 2) naming
the option and the allowed range, before any work starts.
"""

from __future__ import annotations

import math

import typer

__all__ = ["LIMITS", "BoundedNumber", "bounded_float", "int_limit"]

#: The upper bound of every number option, in one place (README "Option limits").
LIMITS: dict[str, float] = {
    "busy_timeout": 3600.0,  # seconds to wait for a lock: an hour
    "llm_timeout": 3600.0,  # seconds for one LLM request
    "retry_backoff": 600.0,  # seconds before the first retry (the doubling is capped too)
    "retries": 100,  # retries of a failing step
    "llm_retries": 100,  # HTTP retries inside one LLM call
    "poll": 3600.0,  # seconds between a worker's looks for work
    "max_idle": 7 * 24 * 3600.0,  # a week without work
    "lease": 24 * 3600.0,  # a day
    "interval": 3600.0,  # seconds between polls of `logs --follow`
    "concurrency": 256,  # threads of one worker
    "batch": 1_000_000,  # steps of one session before a worker moves on
    "count": 2**63 - 1,  # ids, row counts and offsets: SQLite's (and bigint's) limit
}


class BoundedNumber:
    """Parses one option value into a finite int or float within [minimum, maximum].

    Raises ``typer.BadParameter``, which Click reports as a usage error for the option.
    """

    def __init__(self, kind: type[int] | type[float], minimum: float, maximum: float) -> None:
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.__name__ = kind.__name__  # Typer names the metavar after the parser

    def __call__(self, value: object) -> int | float:
        number: int | float
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value  # a default value, already a number
        else:
            try:
                number = self.kind(str(value).strip())
            except (TypeError, ValueError):
                what = "an integer" if self.kind is int else "a number"
                raise typer.BadParameter(f"{value!r} is not {what}.") from None
        if not math.isfinite(number):
            raise typer.BadParameter(f"{value!r} is not a finite number.")
        if not self.minimum <= number <= self.maximum:
            raise typer.BadParameter(
                f"{value} is not between {_show(self.minimum)} and {_show(self.maximum)}."
            )
        return number


def _show(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def bounded_float(minimum: float, limit: str) -> BoundedNumber:
    """A finite float from ``minimum`` up to ``LIMITS[limit]``."""
    return BoundedNumber(float, minimum, LIMITS[limit])


def int_limit(limit: str) -> int:
    """The upper bound of an integer option (``typer.Option(..., min=1, max=int_limit(…))``)."""
    return int(LIMITS[limit])
