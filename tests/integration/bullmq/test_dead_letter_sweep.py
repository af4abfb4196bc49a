"""The dead-letter sweep: a failure whose copy was never made is copied once at worker start-up; a failure whose
copy an operator replayed (and removed) is left alone."""

from __future__ import annotations

import redis.asyncio as redis_asyncio
from bullmq import Queue

from adapters.bullmq.dead_letter import BullmqDeadLetter
from adapters.bullmq.dead_letter_sweep import DeadLetterSweeper
from adapters.bullmq.keys import DEAD_LETTER_QUEUE
from adapters.bullmq.worker_config import WorkerConfig
from adapters.redis_keys import dead_lettered_key
from domain.jobs import Job, QueueName
from domain.outcomes import Outcome, SnapshotStored
from tests.integration.bullmq.test_outcomes import snapshot_handlers
from tests.support.queues import add, eventually, worker_running


async def _stored(_job: Job) -> Outcome:
    return SnapshotStored("2025-07-01")


async def test_a_failure_without_its_copy_is_copied_once_by_the_start_up_sweep(prefix: str) -> None:
    """Two jobs fail for good and are copied; one copy is lost as in a crash (copy and mark gone), the other is
    replayed (copy removed, mark kept). The next worker's start-up sweep copies the first once, not the second,
    and a further sweep copies nothing."""
    client = redis_asyncio.Redis(decode_responses=True)
    dead_letter = Queue(DEAD_LETTER_QUEUE, {"prefix": prefix, "connection": client})
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix, concurrency=2, dead_letter_settle_s=0.0)
    try:
        async with worker_running(config, snapshot_handlers(_stored)):
            lost = await add(prefix, "snapshots", "process-unknown", {"orgId": "org-lost"})
            replayed = await add(prefix, "snapshots", "process-unknown", {"orgId": "org-replayed"})

            async def both_copied() -> bool:
                return await client.llen(f"{prefix}:dead-letter:wait") == 2

            await eventually(both_copied)
        await dead_letter.remove(f"snapshots.{lost}")
        await client.zrem(dead_lettered_key(prefix), f"snapshots.{lost}")
        await dead_letter.remove(f"snapshots.{replayed}")
        assert await client.llen(f"{prefix}:dead-letter:wait") == 0

        async with worker_running(config, snapshot_handlers(_stored)):

            async def swept() -> bool:
                return await client.llen(f"{prefix}:dead-letter:wait") >= 1

            await eventually(swept)

        copies = await dead_letter.getJobs(["waiting"])
        assert [job.id for job in copies] == [f"snapshots.{lost}"]
        (copy,) = copies
        assert copy.name == "process-unknown"
        assert copy.data["jobId"] == lost
        assert copy.data["data"] == {"orgId": "org-lost"}
        assert copy.data["failedReason"].startswith("invalid job: job name")
        assert copy.data["attemptsMade"] == 1

        sweeper = DeadLetterSweeper(
            client, prefix, "snapshots", BullmqDeadLetter(client, prefix), settle_seconds=0.0, batch=1
        )
        reports = [await sweeper.sweep()]  # a batch of one: the cursor walks over both failures
        while not reports[-1].caught_up and len(reports) < 10:
            reports.append(await sweeper.sweep())
        assert reports[-1].caught_up
        assert sum(report.examined for report in reports) >= 2
        assert [report.copied for report in reports if report.copied] == []
        assert await client.llen(f"{prefix}:dead-letter:wait") == 1
    finally:
        await dead_letter.close()
        await client.aclose()
