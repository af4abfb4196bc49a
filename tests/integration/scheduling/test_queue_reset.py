"""A queue reset from Node (``obliterate({force: true})``) while workers run: /health/scheduler names the missing
schedule, and the running workers put it back within their check interval, without a restart."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import redis.asyncio as redis_asyncio

from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.health.probe import HealthProbe
from adapters.health.server import build_health_app, running_health_server
from adapters.scheduling.schedules import define_schedules, scheduler_queue, scheduler_record, sync_schedules
from domain.jobs import Job, JobName, QueueName
from domain.outcomes import Outcome, Published
from tests.integration.scheduling.support import pending_ticks
from tests.support.queues import eventually, node, worker_running

HOURLY = define_schedules("0 * * * *", "0 * * * *", "UTC")
FAN_OUT = HOURLY[1]
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.asynccontextmanager
async def _scheduler_endpoint(client: redis_asyncio.Redis, prefix: str) -> AsyncIterator[str]:
    probe = HealthProbe(client, POSTGRES_DSN, prefix, queues=(), required_queues=(), timeout_seconds=2.0)
    async with running_health_server(build_health_app(probe), "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}/health/scheduler"


async def _get(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_health_reports_a_schedule_missing_after_node_obliterates_its_queue(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """After the reset /health/scheduler answers 503 naming the fan-out (not the scan, on another queue); after a
    sync it answers 200 again."""
    await sync_schedules(client, prefix, HOURLY)
    async with _scheduler_endpoint(client, prefix) as url:
        assert (await _get(url))[0] == 200
        await node("obliterate", prefix, str(QueueName.SNAPSHOTS))
        status, body = await _get(url)
        assert (status, body["reason"]) == (503, "schedule fan-out-snapshots missing")
        await sync_schedules(client, prefix, HOURLY)
        assert (await _get(url))[0] == 200


async def _fan_out(_job: Job) -> Outcome:
    return Published(0)


async def test_running_workers_reassert_a_schedule_obliterated_from_node(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """With a worker running (checking every 0.5 s), the fan-out scheduler and one pending tick are back within a
    few seconds of the reset; the worker was not restarted."""
    await sync_schedules(client, prefix, HOURLY)
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix, schedule_check_interval_s=0.5)
    handlers: dict[JobName, Handler] = {
        JobName.FAN_OUT_SNAPSHOTS: _fan_out,
        JobName.SNAPSHOT: _fan_out,
        JobName.MAINTAIN_QUEUES: _fan_out,
    }
    async with worker_running(config, handlers, schedules=HOURLY):
        await node("obliterate", prefix, str(QueueName.SNAPSHOTS))
        queue = scheduler_queue(client, prefix, QueueName.SNAPSHOTS)

        async def back() -> bool:
            return await scheduler_record(queue, FAN_OUT.id) is not None

        await eventually(back, within=10)
        assert len(await pending_ticks(client, prefix, FAN_OUT)) == 1
