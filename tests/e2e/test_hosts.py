"""Two hosts on one queue set: two independent checkouts, each running our supervisord.conf (its own var/, socket,
health and webhooks ports), against one Redis Cluster (3 masters, 3 replicas, started here). Each schedule tick
runs once in total, jobs spread over both hosts, and when one host is killed whole (SIGKILL of its supervisord and
of every program) the other completes its in-flight jobs once their locks expire, with no SMS created twice."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pathlib
import signal
import urllib.request
from collections.abc import Iterator

import pytest

from adapters.bullmq.connection import RedisSettings, close_redis, open_client
from tests.e2e.test_restarts import assert_each_sent_once, reminder_jobs
from tests.support.clinic import seed_patients
from tests.support.fakeservers.scripted import Stall
from tests.support.redis_topologies import Cluster, redis_cluster
from tests.support.supervised import (
    Providers,
    SupervisedSystem,
    alive,
    eventually,
    supervised,
    system_env,
)
from tests.support.topologies import RETRY, add_from_node, wait_terminal

pytestmark = pytest.mark.slow

PORTS = tuple(range(7310, 7316))
NODE_CLUSTER = {"cluster": [{"host": "127.0.0.1", "port": port} for port in PORTS[:3]]}
PYTHON_CLUSTER = RedisSettings(cluster_nodes=tuple(("127.0.0.1", port) for port in PORTS))
PREFIX = "{hosts}"  # the cluster is this module's own
TICK_MS = 2000
JOBS = 50
FIRST = 20
IN_FLIGHT = 12
"""Sends whose Twilio answer hangs (the message takes effect): the jobs in flight when host A dies."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with redis_cluster(tmp_path_factory.mktemp("hosts-cluster"), PORTS) as started:
        yield started


def host_env(providers: Providers, database_url: str, cluster: Cluster) -> dict[str, str]:
    """One host's settings: the shared Redis Cluster, database and prefix; its own health and webhooks ports."""
    env = system_env(
        providers,
        database_url,
        PREFIX,
        REDIS_CLUSTER_NODES=cluster.seeds,
        SNAPSHOT_CRON="*/2 * * * * *",  # a fan-out tick every TICK_MS
        LOCK_DURATION_MS="10000",
        STALLED_INTERVAL_MS="2000",
        SEND_SETTLE_SECONDS="16",
        WORKER_GRACE_SECONDS="4",
    )
    del env["REDIS_HOST"], env["REDIS_PORT"]
    return env


def completed_on(host: SupervisedSystem) -> set[str]:
    """Reminder jobs this host's worker completed, from its log (one JSON line per event)."""
    done = set()
    for line in host.log("worker-reminders-00.log").splitlines():
        if '"job_completed"' in line:
            done.add(str(json.loads(line).get("job_id")))
    return done


def reminder_workers_seen_by(host: SupervisedSystem) -> int:
    """``/health/queues``' live reminder workers, asked on this host's own health port."""
    url = f"http://127.0.0.1:{host.env['HEALTH_PORT']}/health/queues"
    with urllib.request.urlopen(url, timeout=10) as answer:  # loopback http
        queues = json.loads(answer.read())["queues"]
    return int(next(queue["workers"] for queue in queues if queue["name"] == "reminders"))


def running_in(directory: pathlib.Path) -> list[int]:
    """Every live process whose working directory is ``directory``: a host's supervisord and all its programs."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit() and alive(int(proc.name)):
            with contextlib.suppress(OSError):
                if os.readlink(proc / "cwd") == str(directory):
                    found.append(int(proc.name))
    return found


def kill_whole(host: SupervisedSystem) -> None:
    """The host lost at once: supervisord frozen (it restarts nothing), every program SIGKILLed (none drains),
    then supervisord SIGKILLed."""
    supervisor = host.supervisord_pid
    os.kill(supervisor, signal.SIGSTOP)
    for pid in running_in(host.directory):
        if pid != supervisor:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    host.crash()


async def fan_out_ticks() -> list[int]:
    """Tick times (ms) of the snapshot fan-outs that ran, from their scheduler job ids ``repeat:<id>:<ms>``."""
    client = open_client(PYTHON_CLUSTER, max_connections=2, socket_timeout_s=5.0)
    try:
        ids = await client.zrange(f"{PREFIX}:snapshots:completed", 0, -1)
    finally:
        await close_redis(client)
    return sorted(int(job_id.rsplit(":", 1)[1]) for job_id in ids if job_id.startswith("repeat:"))


async def stalled_jobs(ids: list[str]) -> int:
    """Jobs the stalled check returned to the queue at least once (bullmq's ``stc`` counter)."""
    client = open_client(PYTHON_CLUSTER, max_connections=2, socket_timeout_s=5.0)
    try:
        counters = [await client.hget(f"{PREFIX}:reminders:{job_id}", "stc") for job_id in ids]
    finally:
        await close_redis(client)
    return sum(1 for counter in counters if counter and int(counter) > 0)


def test_one_host_killed_whole_the_other_finishes_its_work_once(
    tmp_path: pathlib.Path, cluster: Cluster, providers: Providers, database_url: str
) -> None:
    """Both hosts take reminders; host A is killed whole with sends in flight; host B completes every job, each
    patient gets one SMS, and the fan-out schedule ran once per tick across both hosts."""
    org, patients = seed_patients(database_url, JOBS)
    jobs = [{**job, "opts": RETRY} for job in reminder_jobs(org, patients)]
    a_dir, b_dir = tmp_path / "host-a", tmp_path / "host-b"
    a_dir.mkdir()
    b_dir.mkdir()
    env_a, env_b = (host_env(providers, database_url, cluster) for _ in range(2))
    with supervised(a_dir, env_a) as host_a, supervised(b_dir, env_b) as host_b:
        for host in (host_a, host_b):
            host.wait_workers_running(within=120)
            host.wait_running("health", within=60)
        eventually(lambda: reminder_workers_seen_by(host_a) == 2, 30, "host A's health sees both reminder workers")

        ids = asyncio.run(add_from_node(NODE_CLUSTER, PREFIX, "reminders", jobs[:FIRST]))
        eventually(lambda: len(completed_on(host_a) | completed_on(host_b)) >= FIRST, 60, f"the first {FIRST} sent")
        providers.twilio.script(*[Stall(20.0)] * IN_FLIGHT)  # these sends take effect; their answers hang
        ids += asyncio.run(add_from_node(NODE_CLUSTER, PREFIX, "reminders", jobs[FIRST:]))
        eventually(lambda: len(providers.twilio.messages) >= FIRST + IN_FLIGHT, 60, "sends in flight on both hosts")
        kill_whole(host_a)
        eventually(lambda: running_in(a_dir) == [], 10, "nothing of host A left")

        found = asyncio.run(wait_terminal(PYTHON_CLUSTER, PREFIX, "reminders", ids, within=180))
        eventually(lambda: reminder_workers_seen_by(host_b) == 1, 30, "host B's health sees host A gone")
        ticks = asyncio.run(fan_out_ticks())
        spread = (len(completed_on(host_a) & set(ids)), len(completed_on(host_b) & set(ids)))
        assert host_b.shutdown() == 0

    assert set(found.values()) == {"completed"}, found
    assert_each_sent_once(providers, patients, database_url)  # one create per patient at the fake Twilio
    assert all(count >= 1 for count in spread), spread  # jobs went to both hosts
    assert asyncio.run(stalled_jobs(ids)) >= 1, "no job was in flight on the killed host"
    assert len(ticks) >= 3, ticks
    assert len(set(ticks)) == len(ticks), ticks  # each tick ran once, on one of the hosts
    assert all(later - earlier >= TICK_MS for earlier, later in itertools.pairwise(ticks)), ticks
