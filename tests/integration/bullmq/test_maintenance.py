"""Queue maintenance against real Redis with jobs from the npm bullmq producer: finished jobs beyond age and count
are cleaned with BullMQ's own clean, dead letters beyond retention and our leftovers go, and nothing waiting,
delayed or prioritized is touched; each run's counts reach the schedule status and the metrics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from adapters.bullmq.maintenance import MaintenancePolicy, QueueMaintenance
from adapters.bullmq.worker_config import WorkerConfig
from adapters.clock import SystemClock
from adapters.observability.metrics import MetricsRecorder, read_recorded
from adapters.redis_keys import dead_lettered_key, heartbeat_index_key
from adapters.scheduling.schedules import Schedule
from adapters.scheduling.status import ScheduleRunRecorder, schedule_status
from domain.errors import InvalidJob
from domain.jobs import Job, JobName, QueueMaintenanceJob, QueueName
from domain.outcomes import Outcome, SnapshotStored
from tests.integration.bullmq.test_outcomes import snapshot_handlers
from tests.support.queues import add, eventually, node, worker_running

QUEUE = str(QueueName.SNAPSHOTS)
DAY_MS = 86_400_000


@pytest.fixture
async def client() -> AsyncIterator[redis_asyncio.Redis]:
    connection = redis_asyncio.Redis(decode_responses=True)
    try:
        yield connection
    finally:
        await connection.aclose()


async def finished_jobs(prefix: str, completed: int, failed: int) -> None:
    """Node adds ``completed + failed`` snapshot jobs with no removeOnComplete/removeOnFail; a worker finishes them
    (a date of ``bad`` fails at once, as an invalid job)."""

    async def handle(job: Job) -> Outcome:
        if getattr(job, "org_id", "") == "bad":
            raise InvalidJob("orgId", "is bad")
        return SnapshotStored("2025-07-01")

    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(handle)):
        jobs = [{"name": "process-snapshots", "data": {"orgId": "org-1", "date": "2025-07-01"}}] * completed
        jobs += [{"name": "process-snapshots", "data": {"orgId": "bad", "date": "2025-07-01"}}] * failed
        await node("add", prefix, QUEUE, jobs=jobs)
        counts = {"completed": completed, "failed": failed}
        await eventually(lambda: _counts_are(prefix, counts), within=30)


async def _counts_are(prefix: str, expected: dict[str, int]) -> bool:
    counts = (await node("counts", prefix, QUEUE))["counts"]
    return all(counts[state] == n for state, n in expected.items())


async def age(client: redis_asyncio.Redis, prefix: str, state: str, count: int, days: float) -> list[str]:
    """Make the ``count`` oldest jobs of a finished set look ``days`` old (score and ``finishedOn``), as time would."""
    key = f"{prefix}:{QUEUE}:{state}"
    ids: list[str] = await client.zrange(key, 0, count - 1)
    finished = int(time.time() * 1000 - days * DAY_MS)
    for job_id in ids:
        await client.zadd(key, {job_id: finished}, xx=True)
        await client.hset(f"{prefix}:{QUEUE}:{job_id}", "finishedOn", finished)
    return ids


async def test_maintenance_cleans_finished_jobs_beyond_age_and_count_and_never_pending_ones(
    prefix: str, client: redis_asyncio.Redis
) -> None:
    """Of 8 completed jobs, 2 are 3 days old (max 2 days) and the rest beyond a count of 4 go too (oldest first);
    of 3 failed ones, 1 is 20 days old (max 14); waiting, delayed and prioritized jobs stay, as do their counts."""
    await finished_jobs(prefix, completed=8, failed=3)
    stale_completed = await age(client, prefix, "completed", 2, days=3)
    [stale_failed] = await age(client, prefix, "failed", 1, days=20)
    pending = {"data": {"orgId": "org-1", "date": "2025-07-01"}}
    waiting = await add(prefix, QUEUE, "process-snapshots", **pending)
    delayed = await add(prefix, QUEUE, "process-snapshots", **pending, delay=3_600_000)
    prioritized = await add(prefix, QUEUE, "process-snapshots", **pending, priority=5)
    policy = MaintenancePolicy(completed_max_age_s=2 * 86400, failed_max_age_s=14 * 86400, finished_max_count=4)
    metrics = MetricsRecorder(prefix)
    maintenance = QueueMaintenance(client, prefix, [QUEUE], policy, metrics)

    cleaned = await maintenance.run()

    removed = dict(cleaned.removed)
    assert removed[f"{QUEUE}:completed"] == 4  # 2 by age, then the 2 oldest beyond 4
    assert removed[f"{QUEUE}:failed"] == 1
    counts = (await node("counts", prefix, QUEUE))["counts"]
    assert (counts["completed"], counts["failed"]) == (4, 2)
    assert (counts["waiting"], counts["delayed"], counts["prioritized"]) == (1, 1, 1)
    for job_id in (*stale_completed, stale_failed):
        assert not await client.exists(f"{prefix}:{QUEUE}:{job_id}")
    for job_id in (waiting, delayed, prioritized):
        assert await client.exists(f"{prefix}:{QUEUE}:{job_id}")
    await metrics.flush(client)
    samples = await read_recorded(client, prefix)
    removed_metric = {dict(s.labels)["kind"]: s.value for s in samples if s.metric == "maintenance_removed_total"}
    assert (removed_metric["completed"], removed_metric["failed"]) == (4, 1)


async def test_maintenance_drops_expired_dead_letters_and_our_leftover_keys(
    prefix: str, client: redis_asyncio.Redis
) -> None:
    """A dead letter older than the retention is removed with its failure mark, a recent one stays; a heartbeat
    index entry whose worker's key expired is dropped."""
    dead_letter = BullmqDeadLetter(client, prefix)
    now_ms = int(time.time() * 1000)
    for job_id, finished in (("old", now_ms - 40 * DAY_MS), ("new", now_ms - DAY_MS)):
        failed = FailedJob(
            QUEUE, "process-snapshots", job_id, {}, "TransientError: x", 3, 3, finished, None, finished, 0
        )
        await dead_letter.record(failed)
    await client.zadd(dead_lettered_key(prefix), {f"{QUEUE}.old": now_ms - 40 * DAY_MS})
    await client.sadd(heartbeat_index_key(prefix, QUEUE), "worker-gone")
    maintenance = QueueMaintenance(client, prefix, [QUEUE], MaintenancePolicy(), MetricsRecorder(prefix))

    removed = dict((await maintenance.run()).removed)

    assert removed["dead-letter:expired"] == 1
    assert removed["cf:leftovers"] == 2
    assert not await client.exists(dead_letter.copy_key(QUEUE, "old"))
    assert await client.exists(dead_letter.copy_key(QUEUE, "new"))
    assert await client.zscore(dead_lettered_key(prefix), f"{QUEUE}.old") is None
    assert not await client.sismember(heartbeat_index_key(prefix, QUEUE), "worker-gone")


async def test_a_maintenance_run_leaves_its_counts_in_the_schedule_status(
    prefix: str, client: redis_asyncio.Redis
) -> None:
    """Run through the schedule's recorder (as a tick is), the counts show in ``cli schedules``' status."""
    schedule = Schedule("maintain-queues", JobName.MAINTAIN_QUEUES, pattern="15 * * * *")
    maintenance = QueueMaintenance(client, prefix, [QUEUE], MaintenancePolicy(), MetricsRecorder(prefix))
    recorded = ScheduleRunRecorder(client, prefix, SystemClock()).wrap(schedule, maintenance.run)

    await recorded(QueueMaintenanceJob())

    [status] = await schedule_status(client, prefix, [schedule])
    assert status["last_outcome"] == "ok"
    assert status["removed"] == {
        f"{QUEUE}:completed": 0,
        f"{QUEUE}:failed": 0,
        "dead-letter:expired": 0,
        "cf:leftovers": 0,
    }
    assert json.dumps(status)  # JSON-ready for the CLI
