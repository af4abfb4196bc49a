"""The periodic-loop helper every background loop uses (heartbeat, metrics flush, sweep, keeper, reconciler)."""

from __future__ import annotations

import asyncio

from adapters.periodic import run_periodically

HOUR = 3600.0


async def test_runs_at_once_and_again_until_stopped() -> None:
    """The action runs at once, again after each (here zero) interval, and not after ``stop`` is set."""
    stop, runs = asyncio.Event(), []

    async def action() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            stop.set()

    await run_periodically(action, 0.0, stop)
    assert runs == [0, 1, 2]


async def test_stop_cuts_the_wait_short() -> None:
    """A loop waiting an hour ends as soon as ``stop`` is set, after its one run."""
    stop, runs = asyncio.Event(), []

    async def action() -> None:
        runs.append(1)
        asyncio.get_running_loop().call_soon(stop.set)

    await asyncio.wait_for(run_periodically(action, HOUR, stop), 30)
    assert runs == [1]


async def test_wait_first_skips_the_run_when_stopped_during_the_first_wait() -> None:
    """With ``wait_first``, a loop stopped before its first interval ends never runs its action."""
    stop, runs = asyncio.Event(), []
    stop.set()

    async def action() -> None:
        runs.append(1)

    await run_periodically(action, HOUR, stop, wait_first=True)
    assert runs == []


async def test_the_pause_the_action_returns_replaces_the_interval() -> None:
    """An action that asks to come back at once (a sweep with work left) is not held for the hour."""
    stop, runs = asyncio.Event(), []

    async def action() -> float:
        runs.append(1)
        if len(runs) == 3:
            stop.set()
        return 0.0

    await asyncio.wait_for(run_periodically(action, HOUR, stop), 30)
    assert runs == [1, 1, 1]
