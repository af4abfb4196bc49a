"""Queue control against real Redis, with jobs from the npm bullmq producer: pause holds new jobs back, resume
releases them; retry-failed moves a bounded number of the oldest failed jobs back to waiting and drops their
dead-letter copies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.dead_letter import BullmqDeadLetter
from adapters.bullmq.queue_control import QueueControl
from adapters.bullmq.worker_config import WorkerConfig
from domain.errors import InvalidJob
from domain.jobs import Job, QueueName
from domain.outcomes import Outcome, SnapshotStored
from tests.integration.bullmq.test_outcomes import snapshot_handlers
from tests.support.queues import add, eventually, inspect, node, worker_running

QUEUE = str(QueueName.SNAPSHOTS)
SNAPSHOT = {"orgId": "org-1", "date": "2025-07-01"}


@pytest.fixture
async def client() -> AsyncIterator[redis_asyncio.Redis]:
    connection = redis_asyncio.Redis()
    try:
        yield connection
    finally:
        await connection.aclose()


async def test_pause_holds_new_jobs_from_node_and_resume_releases_them(
    prefix: str, client: redis_asyncio.Redis
) -> None:
    """While the queue is paused a running worker takes no job the Node producer adds (npm bullmq counts it
    waiting); after resume the worker completes it."""
    control = QueueControl(client, prefix, QUEUE)
    seen: list[Job] = []

    async def record(job: Job) -> Outcome:
        seen.append(job)
        return SnapshotStored("2025-07-01")

    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(record)):
        await control.pause()
        job_id = await add(prefix, QUEUE, "process-snapshots", SNAPSHOT)
        await asyncio.sleep(2)
        paused_counts = (await node("counts", prefix, QUEUE))["counts"]
        was_paused, seen_while_paused = await control.is_paused(), len(seen)
        await control.resume()
        await eventually(lambda: _state_is(prefix, job_id, "completed"))

    assert was_paused
    assert (paused_counts["waiting"], paused_counts["active"], seen_while_paused) == (1, 0, 0)
    assert len(seen) == 1
    assert not await control.is_paused()


async def _state_is(prefix: str, job_id: str, state: str) -> bool:
    return (await inspect(prefix, QUEUE, job_id))["state"] == state


@pytest.mark.slow
async def test_retry_failed_moves_the_oldest_failed_jobs_back_and_drops_their_copies(
    prefix: str, client: redis_asyncio.Redis
) -> None:
    """Of three failed (and dead-lettered) jobs, ``retry_failed(2)`` moves the two oldest to waiting with their
    attempts reset and removes their dead-letter copies; the third stays failed with its copy."""

    async def reject(_job: Job) -> Outcome:
        raise InvalidJob("orgId", "is unknown")

    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(reject)):
        ids = [await add(prefix, QUEUE, "process-snapshots", SNAPSHOT, attempts=3) for _ in range(3)]
        await eventually(lambda: _failed_and_copied(client, prefix, 3))
    control = QueueControl(client, prefix, QUEUE)
    oldest_two = await control.failed_ids(2)

    retried = await control.retry_failed(2)

    assert list(retried.moved) == oldest_two
    assert len(set(oldest_two) & set(ids)) == 2
    jobs = {job_id: await inspect(prefix, QUEUE, job_id) for job_id in ids}
    dead_letter = BullmqDeadLetter(client, prefix)
    for job_id, job in jobs.items():
        copied = bool(await client.exists(dead_letter.copy_key(QUEUE, job_id)))
        if job_id in oldest_two:
            assert (job["state"], job["attemptsMade"], copied) == ("waiting", 0, False)
        else:
            assert (job["state"], copied) == ("failed", True)


async def _failed_and_copied(client: redis_asyncio.Redis, prefix: str, count: int) -> bool:
    failed = await client.zcard(f"{prefix}:{QUEUE}:failed")
    copies = await client.llen(f"{prefix}:dead-letter:wait")
    return bool(failed == count and copies == count)
