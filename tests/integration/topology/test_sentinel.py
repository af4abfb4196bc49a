"""The worker on a master watched by three sentinels: reminders from the npm bullmq producer (ioredis Sentinel)
keep flowing across a ``SENTINEL FAILOVER`` mid-run, without a worker restart and without a second send."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.bullmq.connection import RedisSettings
from tests.support.processes import Providers, WorkerProcess, token, workers
from tests.support.queues import eventually
from tests.support.redis_topologies import SENTINEL_MASTER, SENTINEL_PORTS, SentinelSet, redis_sentinel
from tests.support.topologies import (
    ReminderJob,
    add_from_node,
    health_server,
    reminder_jobs,
    topology_env,
    wait_terminal,
)

pytestmark = pytest.mark.slow

NODE_SENTINEL = {"sentinels": [{"host": "127.0.0.1", "port": port} for port in SENTINEL_PORTS], "name": SENTINEL_MASTER}
PYTHON_SENTINEL = RedisSettings(
    sentinels=tuple(("127.0.0.1", port) for port in SENTINEL_PORTS), sentinel_master=SENTINEL_MASTER
)


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    with redis_sentinel(tmp_path_factory.mktemp("sentinel")) as started:
        yield started


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"test-sentinel-{token()}"


@pytest.fixture(scope="module")
def env(sentinel_set: SentinelSet, providers: Providers, database_url: str, prefix: str) -> dict[str, str]:
    return topology_env(
        providers,
        database_url,
        prefix,
        REDIS_SENTINELS=sentinel_set.sentinels,
        REDIS_SENTINEL_MASTER=SENTINEL_MASTER,
    )


@pytest.fixture(scope="module")
def running(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[WorkerProcess]:
    with workers("reminders", env, log_dir) as started:
        yield started[0]


async def _some_sent(providers: Providers, jobs: list[ReminderJob]) -> bool:
    return sum(providers.sms_posts_to(job.phone) for job in jobs) >= 3


async def test_a_failover_mid_run_loses_no_job_and_sends_no_message_twice(
    running: WorkerProcess, sentinel_set: SentinelSet, providers: Providers, prefix: str, env: dict[str, str], db: Any
) -> None:
    """SENTINEL FAILOVER while reminders are processed: the worker follows the new master, every job ends
    completed, each phone received exactly one SMS, and the health server reads the new master too."""
    jobs = await reminder_jobs(db, 30)
    ids = await add_from_node(NODE_SENTINEL, prefix, "reminders", [job.job for job in jobs])
    await eventually(lambda: _some_sent(providers, jobs), within=30)
    old_master = sentinel_set.master_port()
    sentinel_set.failover()

    found = await wait_terminal(PYTHON_SENTINEL, prefix, "reminders", ids, within=120)

    assert sentinel_set.master_port() != old_master
    assert set(found.values()) == {"completed"}, found
    assert [len(providers.sms_to(job.phone)) for job in jobs] == [1] * len(jobs)  # one message each at Twilio
    assert running.process.poll() is None, "the worker restarted instead of following the failover"
    with health_server(env) as get:
        _, body = get("/health/ready")
    checks = json.loads(body)["checks"]
    assert checks["redis"] == "ok"
    assert checks["workers"]["reminders"] == 1  # its heartbeat is written to the new master
