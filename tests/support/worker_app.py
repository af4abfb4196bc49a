"""A worker process for the signal, crash and restart tests: the real runtime on the snapshots queue, with stub
handlers that sleep ``job_seconds`` and then record the job's org id in the Redis list ``<prefix>:test:done``.

Run as ``python -m tests.support.worker_app '<json config>'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import redis.asyncio as redis_asyncio
import uvloop

from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from domain.jobs import Job, JobName, QueueName, SnapshotJob
from domain.outcomes import Outcome, Published, SnapshotStored
from entrypoints.worker import run_worker


async def main(config: dict[str, object]) -> int:
    port = int(str(config.get("port", 6379)))
    prefix = str(config["prefix"])
    recorder = redis_asyncio.Redis(port=port, decode_responses=True)
    job_seconds = float(str(config.get("job_seconds", 0)))

    async def snapshot(job: Job) -> Outcome:
        assert isinstance(job, SnapshotJob)
        await recorder.rpush(f"{prefix}:test:started", f"{job.org_id}:{os.getpid()}")
        await asyncio.sleep(job_seconds)
        await recorder.rpush(f"{prefix}:test:done", f"{job.org_id}:{os.getpid()}")
        return SnapshotStored(job.date.isoformat())

    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    handlers: dict[JobName, Handler] = {
        JobName.SNAPSHOT: snapshot,
        JobName.FAN_OUT_SNAPSHOTS: fan_out,
        JobName.MAINTAIN_QUEUES: fan_out,
    }
    worker_config = WorkerConfig(
        queue=QueueName.SNAPSHOTS,
        redis=RedisSettings(port=port),
        prefix=prefix,
        concurrency=int(str(config.get("concurrency", 4))),
        lock_duration_ms=int(str(config.get("lock_duration_ms", 30_000))),
        stalled_interval_ms=int(str(config.get("stalled_interval_ms", 30_000))),
        grace_period_s=float(str(config.get("grace_period_s", 10))),
    )
    try:
        return await run_worker(worker_config, handlers)
    finally:
        await recorder.aclose()


if __name__ == "__main__":
    sys.exit(uvloop.run(main(json.loads(sys.argv[1]))))
