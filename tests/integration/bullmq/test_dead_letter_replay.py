"""Replaying one dead letter from several operators at once adds its job once (a deterministic id), records each
replay with who and when, and leaves no copy behind."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as redis_asyncio

from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from adapters.bullmq.dead_letter_admin import DeadLetterAdmin
from tests.support.queues import node


async def test_concurrent_replays_of_one_copy_add_one_job(prefix: str) -> None:
    """Ten replays racing on one copy: exactly one adds the job, which npm bullmq reads back with the same data."""
    client = redis_asyncio.Redis()
    try:
        now_ms = int(time.time() * 1000)
        data = {"orgId": "org-1", "date": "2025-07-01"}
        failed = FailedJob(
            "snapshots", "process-snapshots", "42", data, "TransientError: x", 3, 3, now_ms, None, now_ms, 0
        )
        await BullmqDeadLetter(client, prefix).record(failed)
        admin = DeadLetterAdmin(client, prefix)
        entry = await admin.get("snapshots.42")
        assert entry is not None

        records = await asyncio.gather(*(admin.replay(entry, f"op-{n}", now_ms) for n in range(10)))

        assert sum(record.added for record in records) == 1
        assert {record.job_id for record in records} == {f"42-replay-{now_ms}"}
        [job] = (await node("inspect", prefix, "snapshots", ids=[f"42-replay-{now_ms}"]))["jobs"]
        assert (job["name"], job["data"], job["state"]) == ("process-snapshots", data, "waiting")
        assert await admin.get("snapshots.42") is None
        logged = await admin.replays_of("snapshots.42")
        assert sorted(record.by for record in logged) == sorted(f"op-{n}" for n in range(10))
    finally:
        await client.aclose()
