"""Each schedule's status: written around its handler, read by the health endpoint and the CLI.

The hash ``<prefix>:cf:schedule:<name>`` follows the contract in adapters/scheduling/status_store.py (pattern, tz,
next_run, last_started, last_finished, last_outcome ``ok``/``failed``, jobs_queued, and a maintenance run's
``removed`` counts). The handler wrapper records a
run however it was started (a tick or :func:`adapters.scheduling.schedules.run_now`). Status is advisory: a failure
to write it is logged, never turned into a failure of the job it describes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.asyncio as redis_asyncio
import structlog
from redis.exceptions import RedisError

from adapters.redis_keys import schedule_key
from adapters.redis_topology import QueuePrefixes, as_prefixes
from adapters.scheduling.schedules import Schedule, scheduler_queue, scheduler_record
from adapters.scheduling.status_store import FIELDS, record_schedule_status
from domain.outcomes import Cleaned, Outcome, Published
from domain.ports import Clock

log = structlog.get_logger()

J = TypeVar("J")
R = TypeVar("R", bound=Outcome)

OUTCOME_OK = "ok"
OUTCOME_FAILED = "failed"


async def _next_run(client: redis_asyncio.Redis, prefixes: QueuePrefixes, schedule: Schedule) -> datetime | None:
    record = await scheduler_record(scheduler_queue(client, prefixes, schedule.queue), schedule.id)
    if not record or record.get("next") is None:
        return None
    return datetime.fromtimestamp(int(record["next"]) / 1000, tz=UTC)


class ScheduleRunRecorder:
    """Wraps the scan and fan-out handlers so that each run leaves its start, end, outcome and count in Redis."""

    def __init__(self, client: redis_asyncio.Redis, prefixes: QueuePrefixes | str, clock: Clock) -> None:
        """``prefixes``: each queue's and ours (a str: one for all)."""
        self._client = client
        self._prefixes = as_prefixes(prefixes)
        self._clock = clock

    def wrap(self, schedule: Schedule, handler: Callable[[J], Awaitable[R]]) -> Callable[[J], Awaitable[R]]:
        """The same handler, recording each run under ``schedule``; exceptions pass through unchanged."""

        async def recorded(job: J) -> R:
            await self._write(schedule, {"last_started": self._clock.now()})
            try:
                outcome = await handler(job)
            except BaseException:
                await self._finished(schedule, OUTCOME_FAILED, 0)
                raise
            removed = json.dumps(dict(outcome.removed)) if isinstance(outcome, Cleaned) else None
            await self._finished(schedule, OUTCOME_OK, outcome.count if isinstance(outcome, Published) else 0, removed)
            return outcome

        return recorded

    async def _finished(self, schedule: Schedule, outcome: str, queued: int, removed: str | None = None) -> None:
        fields: dict[str, str | int | datetime] = {
            "last_finished": self._clock.now(),
            "last_outcome": outcome,
            "jobs_queued": queued,
        }
        if removed is not None:
            fields["removed"] = removed
        try:
            next_run = await _next_run(self._client, self._prefixes, schedule)
        except RedisError:
            next_run = None
        if next_run is not None:
            fields["next_run"] = next_run
        await self._write(schedule, fields)

    async def _write(self, schedule: Schedule, fields: Mapping[str, str | int | datetime]) -> None:
        try:
            await record_schedule_status(self._client, self._prefixes.home, schedule.name, fields)
        except RedisError as error:
            log.warning("schedule_status_not_recorded", schedule=schedule.name, error_type=type(error).__name__)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def schedule_status(
    client: redis_asyncio.Redis, prefixes: QueuePrefixes | str, schedules: Sequence[Schedule]
) -> list[dict[str, Any]]:
    """For each schedule: name, scheduler id, queue, job name, pattern, zone, next run (live from its scheduler
    record), last run start and end, last outcome and jobs queued (from the status hash; None if never run).
    ``prefixes``: each queue's and ours (a str: one for all)."""
    prefixes = as_prefixes(prefixes)
    statuses = []
    for schedule in schedules:
        raw = await client.hmget(schedule_key(prefixes.home, schedule.name), list(FIELDS))
        recorded = {field: _text(value) for field, value in zip(FIELDS, raw, strict=True)}
        next_run = await _next_run(client, prefixes, schedule)
        jobs_queued = recorded["jobs_queued"]
        statuses.append(
            {
                "name": schedule.name,
                "id": schedule.id,
                "queue": str(schedule.queue),
                "job_name": str(schedule.job_name),
                "pattern": schedule.pattern,
                "every_ms": schedule.every_ms,
                "tz": schedule.tz,
                "next_run": next_run.isoformat() if next_run else None,
                "last_started": recorded["last_started"],
                "last_finished": recorded["last_finished"],
                "last_outcome": recorded["last_outcome"],
                "jobs_queued": int(jobs_queued) if jobs_queued is not None else None,
                "removed": json.loads(recorded["removed"]) if recorded["removed"] else None,
                "registered": next_run is not None,
            }
        )
    return statuses
