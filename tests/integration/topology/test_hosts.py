"""Two "hosts" (independent sets of worker processes, as two machines would run them) on one Redis Cluster: the
snapshot fan-out schedule ticks once in total, jobs spread over both, and when one host is SIGKILLed whole the
other completes its in-flight jobs after their locks expire, with no message sent twice."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.bullmq.connection import RedisSettings, close_redis, open_client
from tests.support.processes import Providers, WorkerProcess, token
from tests.support.queues import eventually
from tests.support.redis_topologies import CLUSTER_PORTS, Cluster, redis_cluster
from tests.support.topologies import add_from_node, reminder_jobs, topology_env, wait_terminal

pytestmark = pytest.mark.slow

NODE_CLUSTER = {"cluster": [{"host": "127.0.0.1", "port": port} for port in CLUSTER_PORTS[:3]]}
PYTHON_CLUSTER = RedisSettings(cluster_nodes=tuple(("127.0.0.1", port) for port in CLUSTER_PORTS))
TICK_MS = 2000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with redis_cluster(tmp_path_factory.mktemp("hosts-cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def prefix() -> str:
    return "{hosts-" + token() + "}"


@pytest.fixture(scope="module")
def env(cluster: Cluster, providers: Providers, database_url: str, prefix: str) -> dict[str, str]:
    return topology_env(
        providers,
        database_url,
        prefix,
        REDIS_CLUSTER_NODES=cluster.seeds,
        SNAPSHOT_CRON="*/2 * * * * *",  # a fan-out tick every TICK_MS
    )


def _completed_jobs(worker: WorkerProcess) -> set[str]:
    return {str(event.get("job_id")) for event in worker.log_events() if event.get("event") == "job_completed"}


async def _fan_out_ticks(prefix: str) -> list[int]:
    """The tick times (ms) of the snapshot fan-outs that ran, from their scheduler job ids ``repeat:<id>:<ms>``."""
    client = open_client(PYTHON_CLUSTER, max_connections=2, socket_timeout_s=5.0)
    try:
        ids = await client.zrange(f"{prefix}:snapshots:completed", 0, -1)
    finally:
        await close_redis(client)
    return sorted(int(job_id.rsplit(":", 1)[1]) for job_id in ids if job_id.startswith("repeat:"))


async def _stalled_jobs(prefix: str, ids: list[str]) -> int:
    """Jobs the stalled check returned to the queue at least once (bullmq's ``stc`` counter)."""
    client = open_client(PYTHON_CLUSTER, max_connections=2, socket_timeout_s=5.0)
    try:
        counters = [await client.hget(f"{prefix}:reminders:{job_id}", "stc") for job_id in ids]
    finally:
        await close_redis(client)
    return sum(1 for counter in counters if counter and int(counter) > 0)


async def test_one_host_killed_whole_the_other_finishes_its_work_once(
    env: dict[str, str], providers: Providers, prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """Both hosts take jobs; host A is SIGKILLed mid-run; host B completes every job (A's in-flight ones after
    their locks expire), each phone gets one SMS, and the fan-out schedule ran once per tick across both hosts."""
    host_a = [WorkerProcess(queue, env, log_dir).wait_ready() for queue in ("reminders", "snapshots")]
    host_b = [WorkerProcess(queue, env, log_dir).wait_ready() for queue in ("reminders", "snapshots")]
    try:
        jobs = await reminder_jobs(db, 40)
        ids = await add_from_node(NODE_CLUSTER, prefix, "reminders", [job.job for job in jobs])

        async def both_working() -> bool:
            on_a, on_b = (_completed_jobs(host[0]) & set(ids) for host in (host_a, host_b))
            return len(on_a) >= 3 and len(on_b) >= 1

        await eventually(both_working, within=60)
        for process in host_a:
            process.kill()
        try:
            found = await wait_terminal(PYTHON_CLUSTER, prefix, "reminders", ids, within=120)
        except AssertionError as error:
            raise AssertionError(f"{error}\nhost B:\n{host_b[0].output()[-4000:]}") from None
        await eventually(lambda: _at_least_ticks(prefix, 3), within=30)
        ticks = await _fan_out_ticks(prefix)
    finally:
        for process in host_a:
            if process.process.poll() is None:
                process.kill()
        codes = [process.stop() for process in host_b]
    assert codes == [0, 0]

    assert set(found.values()) == {"completed"}, found
    assert [len(providers.sms_to(job.phone)) for job in jobs] == [1] * len(jobs)  # one message each at Twilio
    assert await _stalled_jobs(prefix, ids) >= 1, "no job was in flight on the killed host"
    assert len(set(ticks)) == len(ticks), ticks
    assert all(later - earlier >= TICK_MS for earlier, later in itertools.pairwise(ticks)), ticks


async def _at_least_ticks(prefix: str, count: int) -> bool:
    return len(await _fan_out_ticks(prefix)) >= count
