"""Keep our schedules in Redis while workers run, not only at their start-up.

An operator who resets a queue from Node (``queue.obliterate({force: true})``) deletes its job schedulers with
everything else; a worker that crashed between taking a tick and adding the next leaves a scheduler without a
pending tick. Every worker process re-runs :func:`~adapters.scheduling.schedules.sync_schedules` every
``interval_s`` seconds, so either is repaired within one interval (plus one sync) while any worker runs; an
unchanged, healthy scheduler is left alone, so a running schedule loses no tick to this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as redis_asyncio
import structlog

from adapters.periodic import run_periodically
from adapters.redis_topology import QueuePrefixes
from adapters.scheduling.schedules import Schedule, sync_schedules

log = structlog.get_logger()


async def keep_schedules(
    client: redis_asyncio.Redis,
    prefixes: QueuePrefixes | str,
    schedules: Sequence[Schedule],
    stop: asyncio.Event,
    interval_s: float,
) -> None:
    """Re-sync ``schedules`` every ``interval_s`` seconds until ``stop`` is set; log each repair it made.

    A failed sync (Redis down) is logged and tried again at the next interval.
    """

    async def check() -> None:
        try:
            report = await sync_schedules(client, prefixes, schedules)
        except Exception as error:  # Redis lost: the next interval tries again
            log.warning("schedules_not_checked", error_type=type(error).__name__)
            return
        repaired = (*report.created, *report.replaced, *report.revived, *report.removed)
        if repaired:
            log.warning("schedules_reasserted", schedulers=list(repaired), report=str(report))

    await run_periodically(check, interval_s, stop, wait_first=True)
