"""A worker process for the scheduling tests: the real runtime on the ``reminders`` queue, started as production
starts it (sync the schedules, then consume), with a fast scan schedule.

The scan is the real ReminderService over in-memory CRM fakes (the same appointments in every process) publishing
through the real BullMQ publisher, wrapped by the status recorder; each run is logged as JSON in the Redis list
``<prefix>:test:scans``. Reminder jobs are completed by a stub. Run as
``python -m tests.integration.scheduling.tick_worker '<json config>'``; SIGTERM stops it (exit 0).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta

import redis.asyncio as redis_asyncio
import uvloop

from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.publisher import BullmqJobPublisher
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.clock import SystemClock
from adapters.scheduling.cron import install_zoned_repeat_strategy
from adapters.scheduling.schedules import Schedule, sync_schedules
from adapters.scheduling.status import ScheduleRunRecorder
from domain.jobs import AppointmentScanJob, Job, JobName, QueueName
from domain.outcomes import Outcome, Published, Skipped
from domain.values import AppointmentId
from entrypoints.demo import midday_zone
from entrypoints.worker import run_worker
from tests.support.reminder_world import make_world

APPOINTMENT_OFFSETS_H = (2.0, 3.5, 5.0, 10.0, 24.5)
"""Appointments this far from a fixed hour: some reminders are due now or within the scan horizon, some later."""


def scan_schedule(config: dict[str, object]) -> Schedule:
    return Schedule("scan-appointments", JobName.SCAN_APPOINTMENTS, pattern=str(config["pattern"]), tz="UTC")


async def main(config: dict[str, object]) -> int:
    prefix = str(config["prefix"])
    install_zoned_repeat_strategy()
    clock = SystemClock()
    log = redis_asyncio.Redis(port=6379, decode_responses=True)
    publishing = redis_asyncio.Redis(port=6379, decode_responses=True)
    base = datetime.fromisoformat(str(config["base"])).astimezone(UTC)
    world = make_world(base)
    world.add_org(zone=midday_zone(base))  # the send window open whatever the hour the suite runs at
    world.add_contact()
    for index, hours in enumerate(APPOINTMENT_OFFSETS_H):
        world.add_appointment(base + timedelta(hours=hours), appointment_id=AppointmentId(f"a-{index}"))
    world.service.clock = clock
    world.service.publisher = BullmqJobPublisher(publishing, prefix, clock)
    schedule = scan_schedule(config)

    async def scan(job: AppointmentScanJob) -> Published:
        outcome = await world.service.scan(job)
        entry = {"pid": os.getpid(), "count": outcome.count, "already": outcome.already_queued}
        await log.rpush(f"{prefix}:test:scans", json.dumps(entry))
        return outcome

    recorded_scan = ScheduleRunRecorder(publishing, prefix, clock).wrap(schedule, scan)

    async def scan_handler(job: Job) -> Outcome:
        assert isinstance(job, AppointmentScanJob)
        return await recorded_scan(job)

    async def reminder(_job: Job) -> Outcome:
        return Skipped("test_stub")

    await sync_schedules(publishing, prefix, [schedule], owned_queues=[QueueName.REMINDERS])
    handlers: dict[JobName, Handler] = {JobName.SCAN_APPOINTMENTS: scan_handler, JobName.REMINDER: reminder}
    worker_config = WorkerConfig(
        queue=QueueName.REMINDERS, redis=RedisSettings(port=6379), prefix=prefix, concurrency=4
    )
    await log.rpush(f"{prefix}:test:ready", str(os.getpid()))
    try:
        return await run_worker(worker_config, handlers)
    finally:
        await log.aclose()
        await publishing.aclose()


if __name__ == "__main__":
    sys.exit(uvloop.run(main(json.loads(sys.argv[1]))))
