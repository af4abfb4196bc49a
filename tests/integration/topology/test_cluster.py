"""The worker on a real Redis Cluster (3 masters, 3 replicas) fed by the npm bullmq producer over an ioredis
Cluster with a hash-tagged prefix: job effects, the dead-letter path, health and metrics, a master SIGKILLed
mid-run, and the refusal of a prefix without a hash tag."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from adapters.bullmq.connection import RedisSettings, close_redis, open_redis
from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from tests.support.crm import create_contact, create_org, enroll_in_sequence, unique_phone
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import Providers, WorkerProcess, run_cli, token, worker_per_queue
from tests.support.queues import eventually
from tests.support.redis_topologies import CLUSTER_PORTS, Cluster, cli, redis_cluster
from tests.support.topologies import (
    RETRY,
    ReminderJob,
    add_from_node,
    health_server,
    launch_refusal,
    node_on,
    reminder_jobs,
    topology_env,
    wait_terminal,
)

pytestmark = pytest.mark.slow

NODE_CLUSTER = {"cluster": [{"host": "127.0.0.1", "port": port} for port in CLUSTER_PORTS[:3]]}
PYTHON_CLUSTER = RedisSettings(cluster_nodes=tuple(("127.0.0.1", port) for port in CLUSTER_PORTS))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def prefix() -> str:
    return "{cf-" + token() + "}"


@pytest.fixture(scope="module")
def env(cluster: Cluster, providers: Providers, database_url: str, prefix: str) -> dict[str, str]:
    return topology_env(
        providers,
        database_url,
        prefix,
        REDIS_CLUSTER_NODES=cluster.seeds,
    )


@pytest.fixture(scope="module")
def running(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[dict[str, WorkerProcess]]:
    with worker_per_queue(env, log_dir) as running:
        yield running


async def test_reminder_and_dunning_jobs_from_node_reach_their_effects(
    running: dict[str, WorkerProcess], providers: Providers, prefix: str, db: Any
) -> None:
    """A reminder is one SMS and a dunning notice one email plus one SMS; Node reads both jobs completed."""
    [reminder] = await reminder_jobs(db, 1)
    org = await create_org(db, name="Oak Physio")
    phone, address = unique_phone(), f"alan-{org.tag}@example.com"
    contact = await create_contact(db, org, "Alan", phone=phone, email=address, preferred="email")
    await db.execute(
        "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, due_at)"
        " values ($1, 'inv-1', $2, 12550, 'USD', 'open', $3, $4)",
        org.id,
        contact,
        now_utc() - timedelta(days=38),
        now_utc() - timedelta(days=8),
    )
    dunning = {"orgId": org.id, "contactId": contact, "amount": 125.5, "daysOverdue": 8, "paymentLink": "https://p"}

    [reminder_id] = await add_from_node(NODE_CLUSTER, prefix, "reminders", [reminder.job])
    [dunning_id] = await add_from_node(
        NODE_CLUSTER, prefix, "dunning", [{"name": "process-dunning", "data": dunning, "opts": RETRY}]
    )
    await wait_terminal(PYTHON_CLUSTER, prefix, "reminders", [reminder_id])
    await wait_terminal(PYTHON_CLUSTER, prefix, "dunning", [dunning_id])

    [seen_reminder] = (await node_on(NODE_CLUSTER, "inspect", prefix, "reminders", ids=[reminder_id]))["jobs"]
    [seen_dunning] = (await node_on(NODE_CLUSTER, "inspect", prefix, "dunning", ids=[dunning_id]))["jobs"]
    assert seen_reminder["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}, seen_reminder["failedReason"]
    assert seen_dunning["returnvalue"] == {"outcome": "sent", "channels": ["email", "sms"]}
    assert providers.sms_posts_to(reminder.phone) == 1
    assert providers.sms_posts_to(phone) == 1
    assert len(providers.mail_to(address)) == 1


async def test_nurture_and_snapshot_jobs_from_node_reach_their_effects(
    running: dict[str, WorkerProcess], providers: Providers, prefix: str, db: Any
) -> None:
    """A nurture step is one email and queues the next step on the cluster; a snapshot stores the org's day."""
    org = await create_org(db)
    address = f"grace-{org.tag}@example.com"
    contact = await create_contact(db, org, "Grace", email=address, preferred="email", marketing_consent=True)
    await db.execute(
        "insert into message_templates (org_id, name, channel, subject, body)"
        " values ($1, 'welcome', 'email', 'Welcome, {{ first_name }}', 'Hi {{ first_name }}.')",
        org.id,
    )
    enrollment = await enroll_in_sequence(db, org, contact, channel="email", template="welcome", delays_s=(0, 86400))
    nurture = {
        "orgId": org.id,
        "contactId": contact,
        "sequenceStep": 1,
        "template": "welcome",
        "personalization": {"first_name": "Grace"},
    }
    day = (now_utc() - timedelta(days=2)).date().isoformat()  # a finished day in any zone

    [nurture_id] = await add_from_node(
        NODE_CLUSTER, prefix, "nurture", [{"name": "process-nurture", "data": nurture, "opts": RETRY}]
    )
    [snapshot_id] = await add_from_node(
        NODE_CLUSTER, prefix, "snapshots", [{"name": "process-snapshots", "data": {"orgId": org.id, "date": day}}]
    )

    assert await wait_terminal(PYTHON_CLUSTER, prefix, "nurture", [nurture_id]) == {nurture_id: "completed"}
    assert await wait_terminal(PYTHON_CLUSTER, prefix, "snapshots", [snapshot_id]) == {snapshot_id: "completed"}
    assert [mail["subject"] for mail in providers.mail_to(address)] == ["Welcome, Grace"]
    [following] = (await node_on(NODE_CLUSTER, "inspect", prefix, "nurture", ids=[f"nurture_{enrollment}_2"]))["jobs"]
    assert following["state"] == "delayed"
    assert await db.fetchval("select count(*) from daily_snapshots where org_id = $1", org.id) == 1


async def test_a_malformed_job_is_failed_once_and_copied_to_the_dead_letter_queue(
    running: dict[str, WorkerProcess], prefix: str
) -> None:
    """A reminder without its appointment fails without retries; its copy in dead-letter is readable from Node."""
    job = {"name": "process-reminder", "data": {"orgId": "org-x", "contactId": "c"}, "opts": RETRY}
    [job_id] = await add_from_node(NODE_CLUSTER, prefix, "reminders", [job])

    assert (await wait_terminal(PYTHON_CLUSTER, prefix, "reminders", [job_id]))[job_id] == "failed"
    [failed] = (await node_on(NODE_CLUSTER, "inspect", prefix, "reminders", ids=[job_id]))["jobs"]
    assert failed["attemptsMade"] == 1
    assert "appointmentId" in failed["failedReason"]
    [copy] = (await node_on(NODE_CLUSTER, "inspect", prefix, "dead-letter", ids=[f"reminders.{job_id}"]))["jobs"]
    assert copy is not None
    assert copy["data"]["jobId"] == job_id


async def test_the_cli_lists_and_replays_dead_letters_and_runs_a_schedule_on_the_cluster(
    running: dict[str, WorkerProcess], env: dict[str, str], prefix: str
) -> None:
    """``dead-letter list``/``replay``, ``run-now`` and ``schedules`` work through the cluster client."""
    job = {"name": "process-reminder", "data": {"orgId": "org-y", "contactId": "c"}, "opts": RETRY}
    [job_id] = await add_from_node(NODE_CLUSTER, prefix, "reminders", [job])
    await wait_terminal(PYTHON_CLUSTER, prefix, "reminders", [job_id])
    await eventually(lambda: _copied(prefix, job_id))

    code, out, err = await run_cli(env, "dead-letter", "list", "--json")
    assert code == 0, err
    assert f"reminders.{job_id}" in [copy["id"] for copy in json.loads(out)["jobs"]]
    code, out, err = await run_cli(env, "dead-letter", "replay", f"reminders.{job_id}", "--json")
    assert code == 0, err
    [replayed] = json.loads(out)["jobs"]
    assert replayed["added"] is True
    code, out, err = await run_cli(env, "run-now", "scan-appointments")
    assert code == 0, err
    tick_id = json.loads(out)["queued_job"]
    assert (await wait_terminal(PYTHON_CLUSTER, prefix, "reminders", [tick_id]))[tick_id] == "completed"
    code, out, err = await run_cli(env, "schedules")
    assert code == 0, err
    scan = next(schedule for schedule in json.loads(out) if schedule["name"] == "scan-appointments")
    assert scan["registered"] is True
    assert scan["last_outcome"] == "ok"


async def _copied(prefix: str, job_id: str) -> bool:
    [copy] = (await node_on(NODE_CLUSTER, "inspect", prefix, "dead-letter", ids=[f"reminders.{job_id}"]))["jobs"]
    return copy is not None


async def test_health_and_metrics_read_the_cluster(running: dict[str, WorkerProcess], env: dict[str, str]) -> None:
    """The health server, on the same settings, finds the live workers and the jobs counted by them."""
    with health_server(env) as get:
        status, body = get("/health/queues")
        assert status == 200, body
        queues = {queue["name"]: queue for queue in json.loads(body)["queues"]}
        assert queues["reminders"]["workers"] == 1
        assert queues["reminders"]["counts"]["completed"] >= 1
        status, metrics = get("/metrics")
    assert status == 200
    assert 'queue="reminders"' in metrics


async def test_a_master_killed_mid_run_loses_no_job_and_sends_no_message_twice(
    running: dict[str, WorkerProcess], cluster: Cluster, providers: Providers, prefix: str, db: Any
) -> None:
    """SIGKILL of the master serving the queues' slot while reminders are processed: its replica takes over, the
    worker follows without a restart, every job ends completed and each phone received exactly one SMS."""
    jobs = await reminder_jobs(db, 30)
    ids = await add_from_node(NODE_CLUSTER, prefix, "reminders", [job.job for job in jobs])
    await eventually(lambda: _some_sent(providers, jobs), within=30)  # mid-run: the adds are replicated by now
    cluster.servers.kill(cluster.master_of(prefix))

    found = await wait_terminal(PYTHON_CLUSTER, prefix, "reminders", ids, within=120)

    assert set(found.values()) == {"completed"}, found
    assert [len(providers.sms_to(job.phone)) for job in jobs] == [1] * len(jobs)  # one message each at Twilio
    assert running["reminders"].process.poll() is None, "the worker restarted instead of following the failover"


async def _some_sent(providers: Providers, jobs: list[ReminderJob]) -> bool:
    return sum(providers.sms_posts_to(job.phone) for job in jobs) >= 3


def test_a_prefix_without_hash_tag_is_refused_in_cluster_mode(env: dict[str, str]) -> None:
    """BULLMQ_PREFIX=bull with REDIS_CLUSTER_NODES: the worker exits 78 with one line naming BULLMQ_PREFIX."""
    code, output = launch_refusal({**env, "BULLMQ_PREFIX": "bull"})
    assert code == 78
    [line] = [line for line in output.splitlines() if "BULLMQ_PREFIX" in line]
    assert "hash tag" in json.loads(line)["error"]


def test_an_evicting_node_anywhere_in_the_cluster_stops_the_worker(cluster: Cluster, env: dict[str, str]) -> None:
    """One node (a replica included: it may become master) with an evicting policy: exit 78 naming the policy."""
    replica = max(port for port in CLUSTER_PORTS if port in cluster.servers.processes)
    cli(replica, "config", "set", "maxmemory-policy", "allkeys-lru")
    try:
        code, output = launch_refusal(env)
    finally:
        cli(replica, "config", "set", "maxmemory-policy", "noeviction")
    assert code == 78, output
    assert "maxmemory-policy is 'allkeys-lru'" in output


async def test_add_once_works_on_nodes_that_lost_their_scripts(cluster: Cluster, prefix: str) -> None:
    """After SCRIPT FLUSH on every node (as on a replica just promoted), a dead-letter copy is added once: the first
    record adds it (True), the second finds it (False)."""
    for port in CLUSTER_PORTS:
        if port in cluster.servers.processes:
            cli(port, "script", "flush")
    client = open_redis(PYTHON_CLUSTER, 2)
    try:
        dead_letter = BullmqDeadLetter(client, prefix)
        failed = FailedJob("reminders", "process-reminder", "lost-1", {}, "invalid job", 1, 1, 0, None, None, 0)
        assert await dead_letter.record(failed) is True
        assert await dead_letter.record(failed) is False
    finally:
        await close_redis(client)
