"""Our schedules as BullMQ job schedulers: defined from settings, synced by every worker at start-up, run on demand.

A job scheduler is a Redis record (``<prefix>:<queue>:repeat:<id>``) owning one pending job for its next tick
(``repeat:<id>:<epoch ms>``); whichever worker is free runs it, and the worker that picks a tick up creates the
next one as it starts it (not when it finishes, so a failing tick does not stop the schedule).

Why :func:`sync_schedules` does not simply call ``upsertJobScheduler`` each time: upserting an existing cron
scheduler deletes its pending tick and adds one for the next future instant, so a tick that came while no worker
ran (still pending, overdue) would be lost the moment a worker started. We upsert only what is new, changed, or
has lost its pending tick (a worker that crashed between taking a tick and adding the next one); an unchanged,
healthy scheduler is left alone. Every step is one atomic Lua call, so workers syncing at once are safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import redis.asyncio as redis_asyncio
from bullmq import Queue

from adapters.bullmq.options import job_options
from adapters.bullmq.publisher import add_job_once, default_job_options
from adapters.redis_keys import schedule_key, schedules_index_key
from adapters.redis_topology import QueuePrefixes, as_prefixes
from adapters.scheduling.cron import check_cron, use_zoned_repeat_strategy
from adapters.scheduling.status_store import record_schedule_status
from domain.errors import ConfigurationError
from domain.jobs import CONSUMED_QUEUES, JOB_TYPES, SCHEDULED_JOB_DEFAULTS, JobDefaults, JobName, QueueName
from domain.ports import Clock

OUR_PREFIX = "cf-"
"""Scheduler ids we own start with this; other schedulers in our queues (Node's, an operator's) are left alone."""

_PENDING_STATES = frozenset({"delayed", "waiting", "prioritized", "paused", "waiting-children"})


@attrs.frozen
class Schedule:
    """One schedule: ``name`` (``scan-appointments``) names its status hash; ``id`` is the scheduler id.

    ``pattern`` is a cron expression (5 fields, or 6 with seconds first) in the IANA zone ``tz``; ``every_ms`` a
    fixed period instead (used by tests for fast ticks).
    """

    name: str
    job_name: JobName
    pattern: str | None = None
    tz: str = "UTC"
    every_ms: int | None = None

    def __attrs_post_init__(self) -> None:
        if (self.pattern is None) == (self.every_ms is None):
            raise ConfigurationError(f"schedule {self.name}: give exactly one of a cron pattern or a period")
        if self.pattern is not None:
            check_cron(self.pattern, self.tz)
        if self.every_ms is not None and self.every_ms < 1:
            raise ConfigurationError(f"schedule {self.name}: the period must be a positive number of milliseconds")

    @property
    def id(self) -> str:
        return f"{OUR_PREFIX}{self.name}"

    @property
    def queue(self) -> QueueName:
        return JOB_TYPES[self.job_name].queue

    def repeat_options(self) -> dict[str, Any]:
        if self.pattern is not None:
            return {"pattern": self.pattern, "tz": self.tz}
        return {"every": self.every_ms}


def define_schedules(scan_cron: str, snapshot_cron: str, tz: str) -> tuple[Schedule, ...]:
    """Our two schedules (Settings ``scan_cron``, ``snapshot_cron``, ``schedule_tz``); ConfigurationError if bad.

    The snapshot fan-out runs hourly by default: it picks the orgs whose local time is 01:xx (domain/snapshots.py),
    which with a single UTC org is exactly the Node README's ``0 1 * * *``.
    """
    return (
        Schedule(str(JobName.SCAN_APPOINTMENTS), JobName.SCAN_APPOINTMENTS, pattern=scan_cron, tz=tz),
        Schedule(str(JobName.FAN_OUT_SNAPSHOTS), JobName.FAN_OUT_SNAPSHOTS, pattern=snapshot_cron, tz=tz),
    )


def maintenance_schedule(cron: str, tz: str) -> Schedule:
    """Queue maintenance (adapters/bullmq/maintenance.py; Settings ``maintenance_cron``, hourly at :15 by default)."""
    return Schedule(str(JobName.MAINTAIN_QUEUES), JobName.MAINTAIN_QUEUES, pattern=cron, tz=tz)


def find_schedule(schedules: Iterable[Schedule], key: str) -> Schedule:
    """The schedule named ``key`` (its name or its scheduler id); ConfigurationError naming the known ones."""
    for schedule in schedules:
        if key in (schedule.name, schedule.id):
            return schedule
    known = ", ".join(s.name for s in schedules)
    raise ConfigurationError(f"no schedule {key!r}; known: {known}")


def tick_job_options(defaults: JobDefaults = SCHEDULED_JOB_DEFAULTS) -> dict[str, Any]:
    """What every tick's job (and a run-now job) carries: the Node producer's retries, plus retention limits."""
    return job_options(default_job_options(defaults))


def scheduler_queue(client: redis_asyncio.Redis, prefixes: QueuePrefixes | str, queue: QueueName) -> Queue:
    """A bullmq ``Queue`` (with its prefix among ``prefixes``; a str: one for all) whose job schedulers evaluate cron
    patterns DST-safely (adapters/scheduling/cron.py)."""
    bull_queue = Queue(str(queue), {"prefix": as_prefixes(prefixes).of(str(queue)), "connection": client})
    use_zoned_repeat_strategy(bull_queue)
    return bull_queue


async def scheduler_record(queue: Queue, scheduler_id: str) -> dict[str, Any] | None:
    """The scheduler's record (``Queue.getJobScheduler``), or None when there is none.

    bullmq 3.4.4's ``getJobScheduler`` raises ValueError for an unknown id instead of returning None (its script
    returns an empty reply the backend cannot unpack); tests/integration/scheduling/test_sync.py shows it.
    """
    try:
        record: dict[str, Any] | None = await queue.getJobScheduler(scheduler_id)
    except ValueError:
        return None
    return record


def _epoch_ms_to_datetime(millis: object) -> datetime | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(int(str(millis)) / 1000, tz=UTC)


@attrs.frozen
class SyncReport:
    """What one :func:`sync_schedules` call did, by scheduler id."""

    created: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    revived: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def _matches(record: Mapping[str, Any], schedule: Schedule, options: Mapping[str, Any]) -> bool:
    template = record.get("template") or {}
    return (
        record.get("name") == str(schedule.job_name)
        and record.get("pattern") == schedule.pattern
        and record.get("tz") == (schedule.tz if schedule.pattern is not None else None)
        and record.get("every") == schedule.every_ms
        and template.get("data", {}) == {}
        and template.get("opts") == options
    )


async def _has_pending_tick(queue: Queue, schedule: Schedule, record: Mapping[str, Any]) -> bool:
    state = await queue.getJobState(f"repeat:{schedule.id}:{record.get('next')}")
    return state in _PENDING_STATES


async def _sync_one(queue: Queue, schedule: Schedule, options: Mapping[str, Any]) -> str:
    record = await scheduler_record(queue, schedule.id)
    if record is not None and _matches(record, schedule, options):
        if await _has_pending_tick(queue, schedule, record):
            return "unchanged"
        outcome = "revived"
    else:
        outcome = "created" if record is None else "replaced"
    await queue.upsertJobScheduler(schedule.id, schedule.repeat_options(), str(schedule.job_name), {}, dict(options))
    return outcome


async def _record_definition(client: redis_asyncio.Redis, prefix: str, queue: Queue, schedule: Schedule) -> None:
    fields: dict[str, str | int | datetime] = {"pattern": schedule.pattern or f"every {schedule.every_ms} ms"}
    fields.update(tz=schedule.tz, queue=str(schedule.queue), scheduler_id=schedule.id)
    record = await scheduler_record(queue, schedule.id)
    next_run = _epoch_ms_to_datetime(record.get("next")) if record else None
    if next_run is not None:
        fields["next_run"] = next_run
    await record_schedule_status(client, prefix, schedule.name, fields)


async def sync_schedules(
    client: redis_asyncio.Redis,
    prefixes: QueuePrefixes | str,
    schedules: Sequence[Schedule],
    owned_queues: Sequence[QueueName] = CONSUMED_QUEUES,
    defaults: JobDefaults = SCHEDULED_JOB_DEFAULTS,
) -> SyncReport:
    """Make Redis hold exactly ``schedules`` among our (``cf-``) schedulers in ``owned_queues``.

    New ones are added, changed ones (pattern, zone, job name, options) replace the old, one whose pending tick
    is gone is re-armed, and ``cf-`` schedulers no longer defined are removed with their status. An unchanged
    scheduler is not touched, so an overdue tick still runs once. Safe to call from many processes at once.
    ``prefixes``: each queue's and ours (a str: one for all).
    """
    prefixes = as_prefixes(prefixes)
    names = [s.name for s in schedules]
    if len(set(names)) != len(names):
        raise ConfigurationError("two schedules share a name")
    options = tick_job_options(defaults)
    done: dict[str, list[str]] = {k: [] for k in ("created", "replaced", "revived", "unchanged", "removed")}
    for schedule in schedules:
        queue = scheduler_queue(client, prefixes, schedule.queue)
        done[await _sync_one(queue, schedule, options)].append(schedule.id)
        await _record_definition(client, prefixes.home, queue, schedule)
    wanted = {s.id for s in schedules}
    for queue_name in owned_queues:
        queue = scheduler_queue(client, prefixes, queue_name)
        for scheduler_id in await client.zrange(queue.keys["repeat"], 0, -1):
            scheduler_id = scheduler_id.decode() if isinstance(scheduler_id, bytes) else str(scheduler_id)
            if scheduler_id.startswith(OUR_PREFIX) and scheduler_id not in wanted:
                await queue.removeJobScheduler(scheduler_id)
                await _forget_status(client, prefixes.home, scheduler_id.removeprefix(OUR_PREFIX))
                done["removed"].append(scheduler_id)
    return SyncReport(**{k: tuple(v) for k, v in done.items()})


async def _forget_status(client: redis_asyncio.Redis, prefix: str, name: str) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(schedule_key(prefix, name))
        pipe.srem(schedules_index_key(prefix), name)
        await pipe.execute()


def run_now_job_id(schedule: Schedule, at: datetime) -> str:
    return f"cf-run-now-{schedule.name}-{int(at.timestamp() * 1000)}"


async def run_now(
    client: redis_asyncio.Redis,
    prefixes: QueuePrefixes | str,
    schedule: Schedule,
    clock: Clock,
    defaults: JobDefaults = SCHEDULED_JOB_DEFAULTS,
) -> str:
    """Queue one run of ``schedule`` now, through the same job path as its ticks; return the job id.

    Same queue, job name, empty data and options as a tick, so the same handler runs it and records its status.
    """
    job_id = run_now_job_id(schedule, clock.now())
    queue = scheduler_queue(client, prefixes, schedule.queue)
    await add_job_once(queue, str(schedule.job_name), {}, {**tick_job_options(defaults), "jobId": job_id})
    return job_id
