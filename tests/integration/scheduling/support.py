"""Helpers for the scheduling tests: reading schedulers and tick jobs straight from Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import redis.asyncio as redis_asyncio

from adapters.scheduling.schedules import Schedule


async def pending_ticks(client: redis_asyncio.Redis, prefix: str, schedule: Schedule) -> list[str]:
    """Ids of the schedule's tick jobs waiting to run (delayed or waiting)."""
    key = f"{prefix}:{schedule.queue}"
    delayed = await client.zrange(f"{key}:delayed", 0, -1)
    waiting = await client.lrange(f"{key}:wait", 0, -1)
    return sorted(j for j in [*delayed, *waiting] if j.startswith(f"repeat:{schedule.id}:"))


async def finished_ticks(client: redis_asyncio.Redis, prefix: str, schedule: Schedule) -> list[str]:
    """Ids of the schedule's tick jobs that completed or failed."""
    key = f"{prefix}:{schedule.queue}"
    done = [*await client.zrange(f"{key}:completed", 0, -1), *await client.zrange(f"{key}:failed", 0, -1)]
    return sorted(j for j in done if j.startswith(f"repeat:{schedule.id}:"))


def tick_millis(job_id: str) -> int:
    return int(job_id.rsplit(":", 1)[1])


def now_ms() -> int:
    return int(time.time() * 1000)


async def sleep_until_ms(millis: int) -> None:
    await asyncio.sleep(max(0.0, millis / 1000 - time.time()))


def once_at(moment_ms: int) -> str:
    """A 6-field cron (seconds first) that fires at this second of this day, and next a year later."""
    at = datetime.fromtimestamp(moment_ms / 1000, tz=UTC)
    return f"{at.second} {at.minute} {at.hour} {at.day} {at.month} *"
