"""What Node tooling sees of our workers: npm bullmq's ``getWorkers()`` (what Bull Board lists) on every queue."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator

import pytest

from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.bullmq.worker_identity import node_worker_client_name
from domain.jobs import CONSUMED_QUEUES, JOB_TYPES, Job, JobName, QueueName
from domain.outcomes import Outcome, Published
from tests.support.queues import OwnRedis, eventually, node, unique_prefix, worker_running

CONSUMED = list(CONSUMED_QUEUES)


async def _nothing(_job: Job) -> Outcome:
    return Published(0)


def _handlers(queue: QueueName) -> dict[JobName, Handler]:
    return {name: _nothing for name, job_type in JOB_TYPES.items() if job_type.queue is queue}


async def _workers_seen_by_node(prefix: str, queue: QueueName) -> list[dict[str, object]]:
    workers: list[dict[str, object]] = (await node("workers", prefix, str(queue)))["workers"]
    return workers


@contextlib.asynccontextmanager
async def _our_workers(prefix: str, queue: QueueName, count: int) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            config = WorkerConfig(queue=queue, prefix=prefix, concurrency=5)
            await stack.enter_async_context(worker_running(config, _handlers(queue)))
        yield


@pytest.mark.parametrize("queue", CONSUMED, ids=str)
async def test_node_get_workers_lists_each_of_our_workers_once(prefix: str, queue: QueueName) -> None:
    """Two of our workers on a queue are two workers for Node's ``getWorkers()``, and none once they stopped."""
    async with _our_workers(prefix, queue, 2):

        async def two_listed() -> bool:
            return len(await _workers_seen_by_node(prefix, queue)) == 2

        await eventually(two_listed, within=10)
        # the pooled connections stay unnamed: busy or idle, a worker is listed once
        await node("add", prefix, str(queue), jobs=[{"name": "scan-appointments", "data": {}}])
        assert len(await _workers_seen_by_node(prefix, queue)) == 2
    assert await _workers_seen_by_node(prefix, queue) == []


@pytest.mark.parametrize("queue", ["reminders", "dead-letter", "é-queue 🚀"])
async def test_client_name_is_the_one_npm_bullmq_matches(prefix: str, queue: str) -> None:
    """Our name for a worker connection equals npm bullmq's ``clientName()`` (base64 of the UTF-8 queue name)."""
    answer = await node("workers", prefix, queue)
    assert node_worker_client_name(prefix, queue) == answer["clientName"]


async def test_a_worker_is_listed_again_after_a_redis_restart(tmp_path: pathlib.Path) -> None:
    """The worker's connection is named as it connects, so after Redis restarts Node lists the worker again."""
    own = OwnRedis(tmp_path)
    own.start()
    prefix = unique_prefix()
    config = WorkerConfig(queue=QueueName.DUNNING, prefix=prefix, redis=RedisSettings(port=own.port))
    try:
        async with worker_running(config, _handlers(QueueName.DUNNING)):

            async def listed_once() -> bool:
                answer = await node("workers", prefix, "dunning", port=own.port)
                return len(answer["workers"]) == 1

            await eventually(listed_once, within=10)
            own.stop()
            own.start()
            await eventually(listed_once, within=30)
    finally:
        own.stop()
