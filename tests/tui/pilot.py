"""Driving the TUI headless with Textual's Pilot: run a scenario, read the screen, wait on
conditions (never on the clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flowcli.db.connection import Database, resolve_target
from flowcli.tui.app import FlowcliApp

# Generous: the CI machine is two busy cores.
DEADLINE_S = 90.0
FIXED_NOW_TEXT = "2026-01-02 03:04:05"


def database(db: Path | str) -> Database:
    return Database(resolve_target(str(db)))


def make_app(db: Path | str, **kwargs: Any) -> FlowcliApp:
    kwargs.setdefault("interval", 0.1)
    return FlowcliApp(database(db), **kwargs)


def screen_text(app: FlowcliApp) -> str:
    """What the terminal shows now, as plain text, one line per row ("" while the screen
    is between a layout change and its next paint: some cells have nothing yet)."""
    from textual._context import visible_screen_stack
    from textual.strip import Strip

    visible_screen_stack.set(app._background_screens)
    compositor = app.screen._compositor
    chops = compositor._render_chops(compositor.size.region, lambda y: True)
    if any(strip is None for chop in chops for strip in chop.values()):
        return ""
    return "\n".join(Strip.join(chop.values()).text for chop in chops)


async def read_screen(pilot: Any, timeout: float = DEADLINE_S) -> str:
    """The screen's text once it is fully painted."""
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        text = screen_text(pilot.app)
        if text.strip():
            return text
        assert time.monotonic() < deadline, "the screen never finished painting"


async def wait_for(
    pilot: Any, predicate: Callable[[], bool], what: str, timeout: float = DEADLINE_S
) -> None:
    """Let the app run until ``predicate`` holds; fail with the screen after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}; the screen:\n{screen_text(pilot.app)}"
            )
        await pilot.pause(0.05)
    # Let the screen catch up with the state the predicate saw.
    await pilot.pause()
    await pilot.pause()


async def wait_for_text(pilot: Any, needle: str, timeout: float = DEADLINE_S) -> str:
    await wait_for(pilot, lambda: needle in screen_text(pilot.app), repr(needle), timeout)
    return screen_text(pilot.app)


def session_screen_idle(app: FlowcliApp) -> bool:
    """The session screen has read the database and nothing is running or loading."""
    screen: Any = app.screen
    return (
        getattr(screen, "head", None) is not None
        and not screen.reading
        and app.run_in_progress is None
        and screen.detail_log == screen.detail_shown
    )


def run(
    app: FlowcliApp,
    scenario: Callable[[Any], Awaitable[None]],
    size: tuple[int, int] = (120, 40),
) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)

    asyncio.run(main())
