"""A worker process as the health server sees it: its heartbeat while it runs, gone after SIGTERM; its job counts
in the shared metrics hash; BullMQ's per-minute metrics for the queue rates."""

from __future__ import annotations

import asyncio
import pathlib
import signal

import pytest
from redis.asyncio import Redis

from adapters.bullmq.heartbeat import live_workers
from adapters.health.queues import queue_stats, redis_now_ms
from adapters.observability.metrics import read_recorded
from adapters.redis_keys import heartbeat_key
from tests.support.queues import add, eventually, state_of, worker_process

pytestmark = pytest.mark.slow  # a worker process started and stopped: ~13 s measured


async def test_heartbeat_while_running_gone_after_sigterm_and_counts_in_redis(
    redis_prefix: tuple[Redis, str], tmp_path: pathlib.Path
) -> None:
    """While the process runs, readiness sees one live worker of the queue and the rates read BullMQ's metrics;
    after SIGTERM it exits 0, its heartbeat is withdrawn, and its completed jobs are counted in the metrics hash."""
    _, prefix = redis_prefix
    client = Redis(decode_responses=True)
    log = tmp_path / "worker.log"
    process = worker_process(log, prefix=prefix, concurrency=2)
    try:

        async def heartbeating() -> bool:
            return len(await live_workers(client, prefix, "snapshots")) == 1

        await eventually(heartbeating)
        (worker,) = await live_workers(client, prefix, "snapshots")
        assert worker.worker_id.endswith(f":{process.pid}")
        assert worker.details["concurrency"] == 2
        ids = [await add(prefix, "snapshots", "process-snapshots", {"orgId": f"org-{n}", "date": "2025-07-01"})
               for n in range(3)]  # fmt: skip

        async def all_completed() -> bool:
            return all([await state_of(prefix, "snapshots", job_id) == "completed" for job_id in ids])

        await eventually(all_completed)
        stats = await queue_stats(client, prefix, "snapshots", await redis_now_ms(client))
        assert stats.workers == 1
        assert stats.completed_per_minute is not None
        assert stats.completed_per_minute > 0
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
        output = await asyncio.to_thread(log.read_text)
    try:
        assert code == 0, output
        assert await live_workers(client, prefix, "snapshots") == []
        assert not await client.exists(heartbeat_key(prefix, "snapshots", worker.worker_id))
        samples = {(s.metric, s.labels): s.value for s in await read_recorded(client, prefix)}
        completed = (("job_name", "process-snapshots"), ("outcome", "completed"), ("queue", "snapshots"))
        assert samples[("jobs_total", completed)] == 3
        assert samples[("job_run_seconds_count", completed[:1] + completed[2:])] == 3
        assert samples[("job_wait_seconds_count", completed[:1] + completed[2:])] == 3
    finally:
        await client.aclose()
