"""Queue partitioning with one hash tag per queue (BULLMQ_QUEUE_PREFIXES, the Node CRM's ``new Queue(name,
{prefix: '{name}'})``) on a real Redis Cluster (3 masters, 3 replicas): the npm bullmq producer adds the four job
types to their own-prefixed queues, which live on different masters; the workers, the dead-letter path, the CLI,
the schedules, health and metrics all find them; a prefix without a hash tag is refused at start-up."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from adapters.bullmq.connection import RedisSettings
from tests.support.crm import create_contact, create_org, enroll_in_sequence, unique_phone
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import Providers, WorkerProcess, run_cli, worker_per_queue
from tests.support.queues import eventually
from tests.support.redis_topologies import Cluster, cli, redis_cluster
from tests.support.topologies import (
    RETRY,
    add_from_node,
    health_server,
    launch_refusal,
    node_on,
    reminder_jobs,
    topology_env,
    wait_terminal,
)

pytestmark = pytest.mark.slow

PORTS = tuple(range(7300, 7306))
NODE_CLUSTER = {"cluster": [{"host": "127.0.0.1", "port": port} for port in PORTS[:3]]}
PYTHON_CLUSTER = RedisSettings(cluster_nodes=tuple(("127.0.0.1", port) for port in PORTS))
QUEUES = ("reminders", "nurture", "dunning", "snapshots", "dead-letter")
PREFIX = {queue: "{" + queue + "}" for queue in QUEUES}
"""As an operator of the Node CRM would tag them (the cluster is this module's own: no other run's keys)."""
OUR_PREFIX = "{clientflow}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with redis_cluster(tmp_path_factory.mktemp("partitioned-cluster"), PORTS) as started:
        yield started


@pytest.fixture(scope="module")
def env(cluster: Cluster, providers: Providers, database_url: str) -> dict[str, str]:
    return topology_env(
        providers,
        database_url,
        OUR_PREFIX,
        REDIS_CLUSTER_NODES=cluster.seeds,
        BULLMQ_QUEUE_PREFIXES=",".join(f"{queue}={prefix}" for queue, prefix in PREFIX.items()),
    )


@pytest.fixture(scope="module")
def running(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[dict[str, WorkerProcess]]:
    with worker_per_queue(env, log_dir) as running:
        yield running


async def _terminal(queue: str, ids: list[str]) -> dict[str, str]:
    return await wait_terminal(PYTHON_CLUSTER, PREFIX[queue], queue, ids)


async def test_the_four_job_types_from_node_reach_their_effects_on_queues_spread_over_the_masters(
    running: dict[str, WorkerProcess], cluster: Cluster, providers: Providers, db: Any
) -> None:
    """Each queue's keys sit on the master of its own tag (three masters for the four queues), and a reminder, a
    dunning notice, a nurture step and a snapshot added there by Node reach their effects."""
    [reminder] = await reminder_jobs(db, 1)
    org = await create_org(db, name="Elm Dental")
    phone, address = unique_phone(), f"ada-{org.tag}@example.com"
    contact = await create_contact(
        db, org, "Ada", phone=phone, email=address, preferred="email", marketing_consent=True
    )
    await db.execute(
        "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, due_at)"
        " values ($1, 'inv-1', $2, 9900, 'USD', 'open', $3, $4)",
        org.id,
        contact,
        now_utc() - timedelta(days=38),
        now_utc() - timedelta(days=8),
    )
    await db.execute(
        "insert into message_templates (org_id, name, channel, subject, body)"
        " values ($1, 'welcome', 'email', 'Welcome, {{ first_name }}', 'Hi {{ first_name }}.')",
        org.id,
    )
    await enroll_in_sequence(db, org, contact, channel="email", template="welcome")
    dunning = {"orgId": org.id, "contactId": contact, "amount": 99, "daysOverdue": 8, "paymentLink": "https://p"}
    nurture = {
        "orgId": org.id,
        "contactId": contact,
        "sequenceStep": 1,
        "template": "welcome",
        "personalization": {"first_name": "Ada"},
    }
    day = (now_utc() - timedelta(days=2)).date().isoformat()

    [reminder_id] = await add_from_node(NODE_CLUSTER, PREFIX["reminders"], "reminders", [reminder.job])
    [dunning_id] = await add_from_node(
        NODE_CLUSTER, PREFIX["dunning"], "dunning", [{"name": "process-dunning", "data": dunning, "opts": RETRY}]
    )
    [nurture_id] = await add_from_node(
        NODE_CLUSTER, PREFIX["nurture"], "nurture", [{"name": "process-nurture", "data": nurture, "opts": RETRY}]
    )
    [snapshot_id] = await add_from_node(
        NODE_CLUSTER,
        PREFIX["snapshots"],
        "snapshots",
        [{"name": "process-snapshots", "data": {"orgId": org.id, "date": day}}],
    )

    assert await _terminal("reminders", [reminder_id]) == {reminder_id: "completed"}
    assert await _terminal("dunning", [dunning_id]) == {dunning_id: "completed"}
    assert await _terminal("nurture", [nurture_id]) == {nurture_id: "completed"}
    assert await _terminal("snapshots", [snapshot_id]) == {snapshot_id: "completed"}
    [seen] = (await node_on(NODE_CLUSTER, "inspect", PREFIX["dunning"], "dunning", ids=[dunning_id]))["jobs"]
    assert seen["returnvalue"] == {"outcome": "sent", "channels": ["email", "sms"]}
    assert providers.sms_posts_to(reminder.phone) == 1
    assert providers.sms_posts_to(phone) == 1
    assert sorted(mail["subject"] or "" for mail in providers.mail_to(address))[-1] == "Welcome, Ada"
    assert await db.fetchval("select count(*) from daily_snapshots where org_id = $1", org.id) == 1

    masters = {}
    for queue in ("reminders", "nurture", "dunning", "snapshots"):
        key = f"{PREFIX[queue]}:{queue}:meta"  # written by the worker and the producer alike
        masters[queue] = cluster.master_of(key)
        assert cli(masters[queue], "exists", key) == "1", f"{queue}'s keys are not on {masters[queue]}"
    assert len(set(masters.values())) == 3, masters  # every master holds some queue


async def test_a_failed_job_is_copied_to_the_tagged_dead_letter_queue_and_the_cli_finds_it(
    running: dict[str, WorkerProcess], env: dict[str, str]
) -> None:
    """A malformed reminder fails once; its copy lands in ``{dead-letter}:dead-letter`` (Node reads it there), and
    ``dead-letter list``/``replay`` put it back on ``{reminders}:reminders``."""
    job = {"name": "process-reminder", "data": {"orgId": "org-x", "contactId": "c"}, "opts": RETRY}
    [job_id] = await add_from_node(NODE_CLUSTER, PREFIX["reminders"], "reminders", [job])
    assert (await _terminal("reminders", [job_id]))[job_id] == "failed"
    copy_id = f"reminders.{job_id}"

    async def copied() -> bool:
        found = await node_on(NODE_CLUSTER, "inspect", PREFIX["dead-letter"], "dead-letter", ids=[copy_id])
        return found["jobs"][0] is not None

    await eventually(copied)
    code, out, err = await run_cli(env, "dead-letter", "list", "--json")
    assert code == 0, err
    assert copy_id in [copy["id"] for copy in json.loads(out)["jobs"]]
    code, out, err = await run_cli(env, "dead-letter", "replay", copy_id, "--json")
    assert code == 0, err
    [replayed] = json.loads(out)["jobs"]
    assert replayed["added"] is True
    replay_id = replayed["jobId"]
    [again] = (await node_on(NODE_CLUSTER, "inspect", PREFIX["reminders"], "reminders", ids=[replay_id]))["jobs"]
    assert again is not None


async def test_schedules_live_in_their_queues_and_run_now_goes_through_them(
    running: dict[str, WorkerProcess], env: dict[str, str], cluster: Cluster
) -> None:
    """The job schedulers sit in their own queue's ``repeat`` set; ``run-now`` runs a scan on ``{reminders}`` and
    ``schedules`` reports it registered, with its outcome."""
    repeat = f"{PREFIX['snapshots']}:snapshots:repeat"
    assert int(cli(cluster.master_of(repeat), "zcard", repeat)) >= 1
    code, out, err = await run_cli(env, "run-now", "scan-appointments")
    assert code == 0, err
    tick_id = json.loads(out)["queued_job"]
    assert (await _terminal("reminders", [tick_id]))[tick_id] == "completed"
    code, out, err = await run_cli(env, "schedules")
    assert code == 0, err
    scan = next(schedule for schedule in json.loads(out) if schedule["name"] == "scan-appointments")
    assert scan["registered"] is True
    assert scan["last_outcome"] == "ok"


async def test_health_and_metrics_read_every_queue_under_its_own_prefix(
    running: dict[str, WorkerProcess], env: dict[str, str]
) -> None:
    """One live worker on each queue, a job failed on ``{dunning}`` counted there (and by ``queue counts``), no
    schedule reported missing, queue gauges in /metrics."""
    job = {"name": "process-dunning", "data": {"orgId": "org-z"}, "opts": RETRY}
    [job_id] = await add_from_node(NODE_CLUSTER, PREFIX["dunning"], "dunning", [job])
    assert (await _terminal("dunning", [job_id]))[job_id] == "failed"
    code, out, err = await run_cli(env, "queue", "counts", "dunning")
    assert code == 0, err
    assert json.loads(out)["dunning"]["counts"]["failed"] >= 1
    with health_server(env) as get:
        status, body = get("/health/queues")
        assert status == 200, body
        queues = {queue["name"]: queue for queue in json.loads(body)["queues"]}
        assert {name: queues[name]["workers"] for name in queues} == dict.fromkeys(queues, 1)
        assert queues["dunning"]["counts"]["failed"] >= 1
        status, body = get("/health/scheduler")
        assert status == 200, body
        assert "missing" not in body
        status, metrics = get("/metrics")
    assert status == 200
    assert 'clientflow_queue_workers{queue="dunning"} 1.0' in metrics


def test_a_queue_prefix_without_hash_tag_is_refused_in_cluster_mode(env: dict[str, str]) -> None:
    """``nurture=nurture`` among the queue prefixes: exit 78, one line naming BULLMQ_QUEUE_PREFIXES and the queue."""
    naming = "reminders={reminders},nurture=nurture"
    code, output = launch_refusal({**env, "BULLMQ_QUEUE_PREFIXES": naming})
    assert code == 78, output
    [line] = [line for line in output.splitlines() if "BULLMQ_QUEUE_PREFIXES" in line]
    assert "nurture has none" in json.loads(line)["error"]
