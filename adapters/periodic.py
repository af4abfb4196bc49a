"""The one helper for the background loops beside a worker or server: heartbeat, metrics flush, dead-letter sweep,
schedule keeper, reconciliation. Each runs until its process's ``stop`` event, which also cuts a wait short."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``; True when it is set (at once if it already was)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def run_periodically(
    action: Callable[[], Awaitable[float | None]],
    interval_seconds: float,
    stop: asyncio.Event,
    *,
    wait_first: bool = False,
) -> None:
    """Run ``action`` every ``interval_seconds`` until ``stop`` is set: at once, or after one interval with
    ``wait_first``. ``action`` may return the seconds to wait before its next run instead (a sweep that left work
    behind comes back sooner). An exception of ``action`` ends the loop: actions log and absorb their own failures.
    """
    if wait_first and await stopped_within(stop, interval_seconds):
        return
    while not stop.is_set():
        pause = await action()
        if await stopped_within(stop, interval_seconds if pause is None else pause):
            return
