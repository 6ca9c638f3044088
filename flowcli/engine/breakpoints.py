"""Where a run stops on purpose: breakpoints on step orders and on a flow expression.

``auto`` (and the TUI, which calls it) checks them before each step, so a run stops
*before* the matching step and the session stays where it is, runnable. The step that
would run next comes from flowcli.engine.upcoming (``upcoming_step``), the one way both
the breakpoints and ``explain`` read it. It only reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowcli.engine.upcoming import UpcomingStep, upcoming_step
from flowcli.errors import ExpressionError, UsageError
from flowcli.flows.snapshot import parse_snapshot

if TYPE_CHECKING:
    from flowcli.db.connection import Database

# More breakpoints than this is a typo or a script gone wrong, not a debugging session.
MAX_BREAK_ORDERS = 1000


@dataclass(frozen=True)
class BreakHit:
    """Why a run stopped before a step: ``kind`` is order, expression or error."""

    kind: str
    reason: str


@dataclass(frozen=True)
class Breakpoints:
    """Step orders to stop before, and an expression that stops the run when true."""

    orders: frozenset[int] = frozenset()
    when: str | None = None

    @classmethod
    def parse(cls, orders: Iterable[int] = (), when: str | None = None) -> Breakpoints:
        """Checked breakpoints: a bad order or expression is a usage error, before any step."""
        from flowcli.sandbox.expressions import compile_expression

        chosen = frozenset(orders)
        if len(chosen) > MAX_BREAK_ORDERS:
            raise UsageError(f"at most {MAX_BREAK_ORDERS} --break-at orders")
        bad = sorted(o for o in chosen if isinstance(o, bool) or not isinstance(o, int) or o < 1)
        if bad:
            raise UsageError(f"--break-at {bad[0]!r}: a step order is a whole number ≥ 1")
        if when is not None:
            if not when.strip():
                raise UsageError(
                    "--break-when is empty; give a flow expression such as 'round >= 2'"
                )
            try:
                compile_expression(when)
            except ExpressionError as exc:
                raise UsageError(f"--break-when: {exc}") from None
        return cls(chosen, when)

    def __bool__(self) -> bool:
        return bool(self.orders) or self.when is not None

    def with_order(self, order: int, on: bool) -> Breakpoints:
        orders = self.orders | {order} if on else self.orders - {order}
        return Breakpoints(frozenset(orders), self.when)

    def with_when(self, when: str | None) -> Breakpoints:
        return Breakpoints.parse(self.orders, when)

    def hit(self, upcoming: UpcomingStep) -> BreakHit | None:
        """Whether the run stops before ``upcoming``; evaluate inside the read it came from."""
        order = upcoming.step.order
        if order in self.orders:
            return BreakHit("order", f"breakpoint at step {order}")
        if self.when is None:
            return None
        from flowcli.sandbox.expressions import compile_expression

        try:
            if compile_expression(self.when).evaluate_bool(upcoming.names):
                return BreakHit("expression", f"--break-when {self.when!r} is true")
        except ExpressionError as exc:
            # Running on past a condition that cannot be judged could run past the very
            # step the user wanted to see: stop, and say why.
            return BreakHit("error", f"--break-when {self.when!r} could not be evaluated: {exc}")
        return None

    def describe(self) -> dict[str, Any]:
        return {"orders": sorted(self.orders), "when": self.when}


@dataclass(frozen=True)
class PendingCheck:
    """What ``check_before_step`` found: the upcoming step and the breakpoint it hit."""

    upcoming: UpcomingStep | None
    hit: BreakHit | None


RUNNABLE_STATUSES = ("not_started", "running")


def check_before_step(
    db: Database, session_id: int, breakpoints: Breakpoints | None
) -> PendingCheck:
    """The upcoming step of a runnable session and whether a breakpoint stops before it,
    in one short read transaction (nothing is held while the caller then asks a user)."""
    from flowcli.db import session_store as store
    from flowcli.engine.conventions import conventions_for

    summary_rounds = conventions_for(db.owner).rounds_end_on_summary
    with db.read() as conn:
        row = store.load_session(conn, session_id)
        if (row.status or "not_started") not in RUNNABLE_STATUSES:
            return PendingCheck(None, None)
        snapshot = parse_snapshot(row.flow_snapshot)
        upcoming = upcoming_step(conn, row, snapshot, rounds_end_on_summary=summary_rounds)
        hit = breakpoints.hit(upcoming) if breakpoints else None
    return PendingCheck(upcoming, hit)


__all__ = [
    "BreakHit",
    "Breakpoints",
    "PendingCheck",
    "UpcomingStep",
    "check_before_step",
    "upcoming_step",
]
