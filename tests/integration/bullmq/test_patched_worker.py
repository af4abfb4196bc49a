"""One test per behaviour ``adapters/bullmq/patched_worker.py`` changes in bullmq 3.4.4, against real Redis and the
real npm bullmq producer: the next job fetched by ``moveToFinished``, no idle gaps under Node's global concurrency
and rate limits, millisecond blocking waits for delayed jobs, and no job left active by a close."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from domain.jobs import Job, JobName, QueueName
from domain.outcomes import Outcome, Published, SnapshotStored
from tests.support.queues import OwnRedis, delete_keys, eventually, inspect, node, worker_running

QUEUE = str(QueueName.SNAPSHOTS)
SNAPSHOT = {"name": "process-snapshots", "data": {"orgId": "org-1", "date": "2025-07-01"}}
WINDOW_MS = 1000
"""The rate limit's window, and the largest gap allowed between jobs that could run back to back."""
SLACK_MS = 500
"""Scheduling slack on a loaded test machine; bullmq 3.4.4's gaps were drainDelay (5 s)."""


def handlers(job_seconds: float = 0.0) -> dict[JobName, Handler]:
    async def snapshot(_job: Job) -> Outcome:
        await asyncio.sleep(job_seconds)
        return SnapshotStored("2025-07-01")

    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    return {JobName.SNAPSHOT: snapshot, JobName.FAN_OUT_SNAPSHOTS: fan_out, JobName.MAINTAIN_QUEUES: fan_out}


async def completed(prefix: str, count: int, port: int = 6379) -> bool:
    client = redis_asyncio.Redis(port=port)
    try:
        return bool(await client.zcard(f"{prefix}:{QUEUE}:completed") >= count)
    finally:
        await client.aclose()


async def run_times(prefix: str, count: int) -> list[tuple[int, int]]:
    """(processedOn, finishedOn) of jobs 1..count, in id (= add) order, as Node reads them."""
    jobs = (await node("inspect", prefix, QUEUE, ids=[str(i) for i in range(1, count + 1)]))["jobs"]
    return [(job["processedOn"], job["finishedOn"]) for job in jobs]


async def added_to_an_idle_worker(prefix: str, count: int, concurrency: int, job_seconds: float) -> None:
    """Start a worker, let it go idle (blocked on the marker), add ``count`` jobs from Node, wait for them."""
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix, concurrency=concurrency)
    async with worker_running(config, handlers(job_seconds)):
        await asyncio.sleep(0.5)
        await node("add", prefix, QUEUE, jobs=[SNAPSHOT] * count)
        await eventually(lambda: completed(prefix, count), within=60)


@pytest.fixture
async def own_redis(tmp_path: pathlib.Path) -> AsyncIterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_each_job_costs_one_lua_call_its_finish_fetches_the_next(prefix: str, own_redis: OwnRedis) -> None:
    """200 queued jobs at concurrency 1: ~one EVALSHA per job (moveToFinished fetching the next), not two."""
    jobs, port = 200, own_redis.port
    await node("add-noop", prefix, QUEUE, port, count=jobs, **SNAPSHOT)
    client = redis_asyncio.Redis(port=port, decode_responses=True)
    try:
        await client.config_resetstat()
        config = WorkerConfig(queue=QueueName.SNAPSHOTS, redis=RedisSettings(port=port), prefix=prefix, concurrency=1)
        async with worker_running(config, handlers()):
            await eventually(lambda: completed(prefix, jobs, port), within=60)
        lua_calls = int((await client.info("commandstats"))["cmdstat_evalsha"]["calls"])
    finally:
        await client.aclose()
    assert jobs <= lua_calls < jobs * 1.1 + 10  # bullmq 3.4.4: two per job (moveToActive, then moveToFinished)


async def test_global_concurrency_one_runs_jobs_back_to_back_in_order(prefix: str) -> None:
    """Node's setGlobalConcurrency(1), worker concurrency 10: 8 jobs of 20 ms run one at a time, in order, each
    starting within a window of the previous one's finish (bullmq 3.4.4: ~5 s apart)."""
    await node("global-limits", prefix, QUEUE, concurrency=1)
    await added_to_an_idle_worker(prefix, 8, concurrency=10, job_seconds=0.02)
    times = await run_times(prefix, 8)
    assert [start for start, _ in times] == sorted(start for start, _ in times)
    for (_, finished), (started, _) in itertools.pairwise(times):
        assert 0 <= started - finished <= WINDOW_MS + SLACK_MS


async def test_global_rate_limit_runs_jobs_at_the_configured_rate(prefix: str) -> None:
    """Node's setGlobalRateLimit(2, 1000): 8 jobs start in order, at most two per window, and no gap between two
    starts exceeds one window (bullmq 3.4.4: pairs 5 s apart)."""
    await node("global-limits", prefix, QUEUE, rateMax=2, rateDurationMs=WINDOW_MS)
    await added_to_an_idle_worker(prefix, 8, concurrency=10, job_seconds=0.02)
    starts = [start for start, _ in await run_times(prefix, 8)]
    assert starts == sorted(starts)
    assert all(later - earlier >= WINDOW_MS - 50 for earlier, later in zip(starts, starts[2:], strict=False))
    assert all(later - earlier <= WINDOW_MS + SLACK_MS for earlier, later in itertools.pairwise(starts))


async def test_delayed_job_starts_to_the_millisecond_not_the_second(prefix: str) -> None:
    """A job delayed 1.1 s starts well within half a second of its due time (bullmq 3.4.4 with a client handed to
    it rounds the blocking wait up to whole seconds: ~0.9 s late)."""
    delay_ms = 1100
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix, concurrency=2)
    async with worker_running(config, handlers()):
        await asyncio.sleep(0.5)
        job_id = (await node("add", prefix, QUEUE, jobs=[{**SNAPSHOT, "opts": {"delay": delay_ms}}]))["ids"][0]
        await eventually(lambda: completed(prefix, 1), within=20)
    job = await inspect(prefix, QUEUE, job_id)
    assert 0 <= job["processedOn"] - (job["timestamp"] + delay_ms) < SLACK_MS - 50


@pytest.mark.slow
async def test_closing_mid_stream_leaves_no_job_active(prefix: str) -> None:
    """Stopping a busy worker at a random moment, many times: every job is completed or still waiting, none is left
    active (jobs fetched by an in-flight fetch or handed back by moveToFinished as closing starts are finished)."""
    jobs, rng = 300, random.Random(15)
    for run in range(12):
        run_prefix = f"{prefix}:{run}"
        await node("add-noop", run_prefix, QUEUE, count=jobs, **SNAPSHOT)
        config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=run_prefix, concurrency=20)
        async with worker_running(config, handlers(job_seconds=0.002)):
            await eventually(lambda: completed(run_prefix, 1), every=0.005)  # noqa: B023  # awaited in this loop
            await asyncio.sleep(rng.uniform(0, 0.1))
        counts: dict[str, Any] = (await node("counts", run_prefix, QUEUE))["counts"]
        assert counts["active"] == 0, f"run {run}: {counts}"
        assert counts["completed"] + counts["waiting"] == jobs, f"run {run}: {counts}"
        await delete_keys(run_prefix)
