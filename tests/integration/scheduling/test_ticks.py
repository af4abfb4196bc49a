"""Schedulers driving the real worker runtime: missed ticks, failing ticks, run-now and status, two processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.clock import SystemClock
from adapters.scheduling.schedules import Schedule, run_now, scheduler_queue, sync_schedules
from adapters.scheduling.status import ScheduleRunRecorder, schedule_status
from adapters.scheduling.status_store import read_schedules
from domain.errors import TransientError
from domain.jobs import Job, JobName, QueueName
from domain.outcomes import Outcome, Published, SnapshotStored
from tests.integration.scheduling.support import (
    finished_ticks,
    now_ms,
    once_at,
    pending_ticks,
    sleep_until_ms,
    tick_millis,
)
from tests.support.queues import ROOT, eventually, worker_running


def snapshots_worker(prefix: str) -> WorkerConfig:
    return WorkerConfig(queue=QueueName.SNAPSHOTS, redis=RedisSettings(port=6379), prefix=prefix, concurrency=2)


def fan_out_handlers(fan_out: Handler) -> dict[JobName, Handler]:
    async def snapshot(_job: Job) -> Outcome:
        return SnapshotStored("2026-01-01")

    return {JobName.FAN_OUT_SNAPSHOTS: fan_out, JobName.SNAPSHOT: snapshot, JobName.MAINTAIN_QUEUES: fan_out}


async def test_tick_missed_while_no_worker_ran_runs_once_when_a_worker_starts(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """A tick that came with no worker up runs once when one starts (after its start-up sync), not lost or doubled."""
    schedule = Schedule("once", JobName.FAN_OUT_SNAPSHOTS, pattern=once_at(now_ms() + 1500))
    await sync_schedules(client, prefix, [schedule], owned_queues=[])
    [tick] = await pending_ticks(client, prefix, schedule)
    await sleep_until_ms(tick_millis(tick) + 1500)  # the tick passes while nothing runs
    runs: list[int] = []

    async def fan_out(_job: Job) -> Outcome:
        runs.append(now_ms())
        return Published(0)

    await sync_schedules(client, prefix, [schedule], owned_queues=[])  # what every worker does at start-up
    async with worker_running(snapshots_worker(prefix), fan_out_handlers(fan_out)):
        await eventually(lambda: _finished(client, prefix, schedule, 1))
        await asyncio.sleep(1.0)  # room for a wrong second run
    assert len(runs) == 1
    assert await finished_ticks(client, prefix, schedule) == [tick]
    [following] = await pending_ticks(client, prefix, schedule)
    assert tick_millis(following) - tick_millis(tick) > 300 * 24 * 3600 * 1000  # the next is a year later


async def _finished(client: redis_asyncio.Redis, prefix: str, schedule: Schedule, count: int) -> bool:
    return len(await finished_ticks(client, prefix, schedule)) >= count


async def test_failing_ticks_are_retried_and_do_not_stop_the_schedule(client: redis_asyncio.Redis, prefix: str) -> None:
    """Each tick's job fails and is retried with its own attempts; new ticks keep coming; status says failed."""
    schedule = Schedule("fails", JobName.FAN_OUT_SNAPSHOTS, pattern="* * * * * *")
    recorder = ScheduleRunRecorder(client, prefix, SystemClock())

    async def fan_out(_job: Job) -> Outcome:
        raise TransientError("database unreachable")

    await sync_schedules(client, prefix, [schedule], owned_queues=[])
    async with worker_running(snapshots_worker(prefix), fan_out_handlers(recorder.wrap(schedule, fan_out))):
        await eventually(lambda: _finished(client, prefix, schedule, 1), within=20)
        await eventually(lambda: _started_ticks_at_least(client, prefix, schedule, 5), within=20)
    queue = scheduler_queue(client, prefix, schedule.queue)
    [failed_tick, *_] = await finished_ticks(client, prefix, schedule)
    job = await queue.getJob(failed_tick)
    assert (job.attemptsMade, job.opts["attempts"]) == (3, 3)
    assert await client.hget(queue.toKey(failed_tick), "ats") == "3"  # three attempts started, no extra run
    [status] = await schedule_status(client, prefix, [schedule])
    assert status["last_outcome"] == "failed"
    assert status["registered"]


async def _started_ticks_at_least(client: redis_asyncio.Redis, prefix: str, schedule: Schedule, count: int) -> bool:
    started = 0
    async for key in client.scan_iter(match=f"{prefix}:{schedule.queue}:repeat:{schedule.id}:*", count=1000):
        if key.rsplit(":", 1)[1].isdigit():  # the tick job's hash, not its :lock or :logs
            started += bool(await client.hget(key, "ats"))
    return started >= count


async def test_run_now_goes_through_the_tick_job_path_and_records_status(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """``run_now`` queues the same job name on the same queue; the wrapped handler runs and the status shows it."""
    schedule = Schedule("fan-out-snapshots", JobName.FAN_OUT_SNAPSHOTS, pattern="0 * * * *")
    recorder = ScheduleRunRecorder(client, prefix, SystemClock())
    runs: list[str] = []

    async def fan_out(_job: Job) -> Outcome:
        runs.append("fan-out")
        return Published(3, already_queued=1)

    await sync_schedules(client, prefix, [schedule], owned_queues=[])
    [before] = await schedule_status(client, prefix, [schedule])
    assert (before["last_outcome"], before["jobs_queued"], before["pattern"], before["tz"]) == (
        None,
        None,
        "0 * * * *",
        "UTC",
    )
    async with worker_running(snapshots_worker(prefix), fan_out_handlers(recorder.wrap(schedule, fan_out))):
        job_id = await run_now(client, prefix, schedule, SystemClock())
        queue = scheduler_queue(client, prefix, schedule.queue)
        await eventually(lambda: _state_is(queue, job_id, "completed"))
    assert job_id.startswith("cf-run-now-fan-out-snapshots-")
    assert runs == ["fan-out"]
    assert (await queue.getJob(job_id)).returnvalue == {"outcome": "published", "count": 3, "alreadyQueued": 1}
    [status] = await schedule_status(client, prefix, [schedule])
    assert (status["last_outcome"], status["jobs_queued"]) == ("ok", 3)
    started, finished = (datetime.fromisoformat(status[k]) for k in ("last_started", "last_finished"))
    assert started <= finished
    assert datetime.fromisoformat(status["next_run"]).minute == 0
    assert datetime.fromisoformat(status["next_run"]) > datetime.now(UTC)
    # The health server's reader (a client without decoded replies) sees the same record.
    raw_client = redis_asyncio.Redis(port=6379)
    try:
        [health] = await read_schedules(raw_client, prefix)
    finally:
        await raw_client.aclose()
    assert (health.name, health.last_outcome, health.jobs_queued, health.pattern) == (
        "fan-out-snapshots",
        "ok",
        3,
        "0 * * * *",
    )
    assert health.next_run == status["next_run"]


async def _state_is(queue: object, job_id: str, state: str) -> bool:
    return bool(await queue.getJobState(job_id) == state)  # type: ignore[attr-defined]


@pytest.fixture
async def tick_workers(prefix: str) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    processes: list[asyncio.subprocess.Process] = []
    yield processes
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_two_worker_processes_run_each_tick_once_and_queue_each_reminder_once(
    client: redis_asyncio.Redis, prefix: str, tick_workers: list[asyncio.subprocess.Process]
) -> None:
    """Two worker processes, a per-second scan: every tick runs exactly once and each reminder is queued once."""
    config = {"prefix": prefix, "pattern": "* * * * * *", "base": datetime.now(UTC).isoformat()}
    for _ in range(2):
        tick_workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.integration.scheduling.tick_worker",
                json.dumps(config),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    await eventually(lambda: _list_length_at_least(client, f"{prefix}:test:ready", 2), within=30)
    schedule = Schedule("scan-appointments", JobName.SCAN_APPOINTMENTS, pattern="* * * * * *")
    await eventually(lambda: _list_length_at_least(client, f"{prefix}:test:scans", 6), within=30)
    for process in tick_workers:
        process.send_signal(signal.SIGTERM)
    for process in tick_workers:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, out.decode()[-2000:]
    scans = [json.loads(entry) for entry in await client.lrange(f"{prefix}:test:scans", 0, -1)]
    ticks = await finished_ticks(client, prefix, schedule)
    assert len(scans) == len(ticks)  # one handler run per tick job: no tick ran twice
    queue = scheduler_queue(client, prefix, schedule.queue)
    assert all([await client.hget(queue.toKey(t), "ats") == "1" for t in ticks])
    reminder_ids = await _reminder_job_ids(client, prefix)
    assert sum(s["count"] for s in scans) == len(reminder_ids) > 0  # each reminder queued by exactly one scan
    assert sum(s["already"] for s in scans) > 0  # later scans found them queued
    [status] = await schedule_status(client, prefix, [schedule])
    assert status["last_outcome"] == "ok"


async def _list_length_at_least(client: redis_asyncio.Redis, key: str, count: int) -> bool:
    return bool(await client.llen(key) >= count)


async def _reminder_job_ids(client: redis_asyncio.Redis, prefix: str) -> set[str]:
    key = f"{prefix}:reminders"
    ids = {
        *await client.zrange(f"{key}:completed", 0, -1),
        *await client.zrange(f"{key}:delayed", 0, -1),
        *await client.zrange(f"{key}:failed", 0, -1),
        *await client.lrange(f"{key}:wait", 0, -1),
        *await client.lrange(f"{key}:active", 0, -1),
    }
    return {job_id for job_id in ids if not job_id.startswith("repeat:")}
