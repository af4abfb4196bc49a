"""Queue statistics: counts per state from bullmq's ``Queue.getJobCounts`` (adapters/bullmq/counts.py, as the CLI),
and what the library offers no call for, read from BullMQ's keys (the ones Bull Board reads): the oldest waiting
job's age (from the FIFO ``wait`` list; prioritized jobs are not considered) and finished-per-minute rates from
BullMQ's ``metrics`` keys, which exist when the workers run with the ``metrics`` option (``{"maxDataPoints": ...}``;
without it the rates are None; the Python library has no ``getMetrics``).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from adapters.bullmq.counts import job_counts
from adapters.bullmq.heartbeat import live_workers
from adapters.bullmq.keys import job_key, queue_key
from adapters.observability.metrics import QueueStats
from adapters.redis_topology import QueuePrefixes, as_prefixes
from domain.jobs import waiting_age_limit_s

RATE_WINDOW_MINUTES = 5


async def redis_now_ms(client: aioredis.Redis) -> int:
    """Redis' clock, the one BullMQ's scripts compare job timestamps with across hosts."""
    seconds, microseconds = await client.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


async def oldest_waiting_age_seconds(client: aioredis.Redis, prefix: str, queue: str, now_ms: int) -> float | None:
    """Seconds the next job to be taken has been waiting (since added, plus its delay); None when none waits."""
    job_id = await client.lindex(queue_key(prefix, queue, "wait"), -1)
    if job_id is None:
        return None
    timestamp, delay = await client.hmget(job_key(prefix, queue, job_id), ["timestamp", "delay"])
    if timestamp is None:
        return None
    ready_at = int(timestamp) + int(delay or 0)
    return max(now_ms - ready_at, 0) / 1000


async def finished_per_minute(client: aioredis.Redis, prefix: str, queue: str, state: str, now_ms: int) -> float | None:
    """Jobs finished in ``state`` (completed or failed) per minute over the last few minutes, from BullMQ's
    metrics: ``count``/``prevCount`` cover the minute of ``prevTS``, the ``data`` list the minutes before it."""
    key = queue_key(prefix, queue, f"metrics:{state}")
    count, prev_ts, prev_count = await client.hmget(key, ["count", "prevTS", "prevCount"])
    if count is None or prev_ts is None:
        return None
    now_minute = now_ms // 60000
    first_minute_in_window = now_minute - RATE_WINDOW_MINUTES + 1
    prev_minute = int(prev_ts) // 60000
    total = int(count) - int(prev_count or 0) if prev_minute >= first_minute_in_window else 0
    points = await client.lrange(f"{key}:data", 0, RATE_WINDOW_MINUTES - 1)
    total += sum(int(p) for i, p in enumerate(points) if prev_minute - 1 - i >= first_minute_in_window)
    return total / RATE_WINDOW_MINUTES


async def queue_stats(client: aioredis.Redis, prefixes: QueuePrefixes | str, queue: str, now_ms: int) -> QueueStats:
    """``queue``'s counts, oldest waiting age, rates and live workers (``prefixes``: its and ours; a str: one)."""
    prefixes = as_prefixes(prefixes)
    prefix = prefixes.of(queue)
    return QueueStats(
        name=queue,
        counts=await job_counts(client, prefix, queue),
        oldest_waiting_age_seconds=await oldest_waiting_age_seconds(client, prefix, queue, now_ms),
        workers=len(await live_workers(client, prefixes.home, queue)),
        completed_per_minute=await finished_per_minute(client, prefix, queue, "completed", now_ms),
        failed_per_minute=await finished_per_minute(client, prefix, queue, "failed", now_ms),
        waiting_age_limit_seconds=waiting_age_limit_s(queue),
    )


async def all_queue_stats(
    client: aioredis.Redis, prefixes: QueuePrefixes | str, queues: Sequence[str]
) -> list[QueueStats]:
    now_ms = await redis_now_ms(client)
    return [await queue_stats(client, prefixes, queue, now_ms) for queue in queues]


async def dead_letter_size(client: aioredis.Redis, prefixes: QueuePrefixes | str, dead_letter_queue: str) -> int:
    """Every job held by the dead-letter queue, whatever its state (nothing consumes it)."""
    return sum((await job_counts(client, as_prefixes(prefixes).of(dead_letter_queue), dead_letter_queue)).values())
