"""The schedule status contract: what the scheduler records about each schedule, for ``/health/scheduler``.

One hash per schedule, ``<prefix>:cf:schedule:<name>``, with string fields ``pattern`` (cron), ``tz`` (IANA zone),
``next_run``, ``last_started``, ``last_finished`` (ISO 8601 with offset, UTC), ``last_outcome`` (``ok``, or a
short PII-free word such as ``failed``), ``jobs_queued`` (an integer), and ``queue`` and ``scheduler_id``: where
its BullMQ job scheduler lives (``Queue.isJobScheduler`` tells whether it is still there); names are listed in the set
``<prefix>:cf:schedules``. The scheduler writes with ``record_schedule_status``; the health server reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import redis.asyncio as aioredis
from bullmq import Queue

from adapters.observability.metrics import ScheduleStatus
from adapters.redis_keys import schedule_key, schedules_index_key
from adapters.redis_topology import QueuePrefixes, as_prefixes

FIELDS = (
    "pattern",
    "tz",
    "next_run",
    "last_started",
    "last_finished",
    "last_outcome",
    "jobs_queued",
    "queue",
    "scheduler_id",
    "removed",
)


def _encode(value: str | int | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("schedule times must be aware datetimes")
        return value.isoformat()
    return str(value)


async def record_schedule_status(
    client: aioredis.Redis, prefix: str, name: str, fields: Mapping[str, str | int | datetime]
) -> None:
    """Set some of a schedule's fields (the others keep their values); unknown field names are refused."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown schedule status fields: {', '.join(sorted(unknown))}")
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(schedule_key(prefix, name), mapping={k: _encode(v) for k, v in fields.items()})
        pipe.sadd(schedules_index_key(prefix), name)
        await pipe.execute()


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def read_schedules(client: aioredis.Redis, prefix: str) -> Sequence[ScheduleStatus]:
    """Every recorded schedule, by name."""
    names = sorted(_str(n) for n in await client.smembers(schedules_index_key(prefix)))
    statuses = []
    for name in names:
        raw = {_str(k): _str(v) for k, v in (await client.hgetall(schedule_key(prefix, name))).items()}
        jobs_queued = raw.get("jobs_queued")
        statuses.append(
            ScheduleStatus(
                name=name,
                pattern=raw.get("pattern"),
                tz=raw.get("tz"),
                next_run=raw.get("next_run"),
                last_started=raw.get("last_started"),
                last_finished=raw.get("last_finished"),
                last_outcome=raw.get("last_outcome"),
                jobs_queued=int(jobs_queued) if jobs_queued and jobs_queued.isdigit() else None,
                removed=raw.get("removed"),
            )
        )
    return statuses


async def missing_schedules(client: aioredis.Redis, prefixes: QueuePrefixes | str) -> set[str]:
    """Names of the recorded schedules whose job scheduler is gone from its queue (the queue was obliterated, the
    scheduler removed by hand). A schedule recorded without ``queue``/``scheduler_id`` is not judged.
    ``prefixes``: each queue's and ours (a str: one for all)."""
    prefixes = as_prefixes(prefixes)
    prefix = prefixes.home
    missing = set()
    for name in await client.smembers(schedules_index_key(prefix)):
        queue, scheduler_id = await client.hmget(schedule_key(prefix, _str(name)), ["queue", "scheduler_id"])
        if queue is None or scheduler_id is None:
            continue
        queue_of = Queue(_str(queue), {"prefix": prefixes.of(_str(queue)), "connection": client})
        if not await queue_of.isJobScheduler(_str(scheduler_id)):
            missing.add(_str(name))
    return missing
