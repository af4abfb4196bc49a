"""Retries, deferrals, configuration errors, start-up checks and the publisher, against real Redis and Node."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.connection import RedisSettings, close_redis, open_redis
from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from adapters.bullmq.publisher import BullmqJobPublisher
from adapters.bullmq.router import Handler
from adapters.bullmq.runtime import EXIT_CONFIGURATION
from adapters.bullmq.worker_config import WorkerConfig
from adapters.clock import SystemClock
from domain.errors import ConfigurationError, DeliveryRateLimited, TransientError
from domain.jobs import Job, JobName, NurtureJob, QueueName, SnapshotJob
from domain.outcomes import Deferred, Outcome, Published, SnapshotStored
from domain.values import ContactId, OrgId
from entrypoints.worker import ShutdownSignals, run_worker
from tests.support.queues import add, eventually, inspect, node, state_of, worker_running

RETRIES = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
SNAPSHOT = {"orgId": "org-1", "date": "2025-07-01"}
QUEUE = str(QueueName.SNAPSHOTS)


def snapshot_handlers(handle: Handler) -> dict[JobName, Handler]:
    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    return {JobName.SNAPSHOT: handle, JobName.FAN_OUT_SNAPSHOTS: fan_out, JobName.MAINTAIN_QUEUES: fan_out}


@pytest.mark.slow
async def test_transient_failure_is_retried_with_exponential_backoff_then_dead_lettered_once(prefix: str) -> None:
    """A TransientError is retried after ~1 s then ~2 s (the producer's backoff), then fails into dead-letter once."""
    calls: list[float] = []

    async def flaky(_job: Job) -> Outcome:
        calls.append(time.monotonic())
        raise TransientError("database unreachable")

    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(flaky)):
        job_id = await add(prefix, QUEUE, "process-snapshots", SNAPSHOT, **RETRIES)
        await eventually(lambda: _state_is(prefix, job_id, "failed"))
        await eventually(lambda: _dead_letters(prefix, 1))
    job = await inspect(prefix, QUEUE, job_id)
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert len(calls) == 3
    assert 0.8 < gaps[0] < 1.6
    assert 1.8 < gaps[1] < 2.6
    assert (job["attemptsMade"], job["failedReason"]) == (3, "TransientError: database unreachable")


async def test_unexpected_exception_is_retried_with_a_reason_free_of_its_text(prefix: str) -> None:
    """A handler bug is retried like a transient failure; the stored reason names the class, not its message."""

    async def buggy(_job: Job) -> Outcome:
        raise KeyError("+14155550123")

    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(buggy)):
        job_id = await add(prefix, QUEUE, "process-snapshots", SNAPSHOT, attempts=2, backoff=0)
        await eventually(lambda: _state_is(prefix, job_id, "failed"))
    job = await inspect(prefix, QUEUE, job_id)
    assert job["attemptsMade"] == 2
    assert job["failedReason"] == "unexpected KeyError in the handler (see the worker log)"
    assert "+14155550123" not in str(job["stacktrace"])


async def test_deferral_moves_the_job_to_delayed_without_spending_an_attempt(prefix: str) -> None:
    """A Deferred outcome and a provider rate limit each delay the job; it completes with attemptsMade 1 of 1."""
    calls: list[float] = []

    async def defer_twice(job: Job) -> Outcome:
        calls.append(time.monotonic())
        assert isinstance(job, SnapshotJob)
        soon = datetime.now(UTC) + timedelta(milliseconds=400)
        if len(calls) == 1:
            return Deferred(until=soon, reason="send_window_closed")
        if len(calls) == 2:
            raise DeliveryRateLimited(retry_at=soon, code="20429")
        return SnapshotStored(job.date.isoformat())

    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(defer_twice)):
        job_id = await add(prefix, QUEUE, "process-snapshots", SNAPSHOT, attempts=1)
        await eventually(lambda: _state_is(prefix, job_id, "completed"))
    job = await inspect(prefix, QUEUE, job_id)
    assert len(calls) == 3
    assert calls[1] - calls[0] > 0.3
    assert (job["attemptsMade"], job["attemptsStarted"]) == (1, 3)
    assert job["returnvalue"] == {"outcome": "snapshot_stored", "date": "2025-07-01"}


async def test_configuration_error_puts_the_job_back_and_stops_the_worker_non_zero(prefix: str) -> None:
    """A ConfigurationError leaves the job delayed with no attempt spent, and run_worker returns 78."""

    async def misconfigured(_job: Job) -> Outcome:
        raise ConfigurationError("Twilio credentials refused")

    job_id = await add(prefix, QUEUE, "process-snapshots", SNAPSHOT, **RETRIES)
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix)
    code = await asyncio.wait_for(run_worker(config, snapshot_handlers(misconfigured), ShutdownSignals()), 20)
    job = await inspect(prefix, QUEUE, job_id)
    assert code == EXIT_CONFIGURATION
    assert (job["state"], job["attemptsMade"]) == ("delayed", 0)


async def test_worker_refuses_a_queue_created_by_an_incompatible_bullmq(prefix: str) -> None:
    """A queue whose meta version marker names another bullmq major stops the worker at start-up with 78."""
    client = redis_asyncio.Redis(decode_responses=True)
    await client.hset(f"{prefix}:{QUEUE}:meta", "version", "bullmq:4.12.0")
    await client.aclose()
    code = await run_worker(
        WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(_never), ShutdownSignals()
    )
    assert code == EXIT_CONFIGURATION


async def test_worker_accepts_a_queue_created_by_npm_bullmq_6(prefix: str) -> None:
    """The marker npm bullmq 6.7.0 writes passes the version check, and a job added there completes."""
    version = (await node("version", prefix, QUEUE))["version"]

    async def stored(_job: Job) -> Outcome:
        return SnapshotStored("2025-07-01")

    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), snapshot_handlers(stored)):
        job_id = await add(prefix, QUEUE, "process-snapshots", SNAPSHOT)
        await eventually(lambda: _state_is(prefix, job_id, "completed"))
    assert version.startswith("bullmq:6.")


async def _never(_job: Job) -> Outcome:
    raise AssertionError("no job should run")


async def test_two_recorders_racing_on_the_same_failure_make_one_dead_letter_copy(prefix: str) -> None:
    """Two clients recording the same failed job at once: one reports the copy, the other finds it, one exists."""
    failed = FailedJob("reminders", "process-reminder", "42", {"orgId": "o"}, "invalid job: x", 1, 3, 1, 2, 3, 0)
    clients = [open_redis(RedisSettings(), 2) for _ in range(2)]
    try:
        results = await asyncio.gather(*(BullmqDeadLetter(c, prefix).record(failed) for c in clients))
    finally:
        for client in clients:
            await close_redis(client)
    copy = (await node("inspect", prefix, "dead-letter", ids=["reminders.42"]))["jobs"][0]
    assert sorted(results) == [False, True]
    assert await _dead_letters(prefix, 1)
    assert copy["data"]["failedReason"] == "invalid job: x"


async def test_publisher_adds_node_readable_jobs_with_the_producer_defaults_once(prefix: str) -> None:
    """A published job has the README retry defaults, retention limits and camelCase data; re-publishing is a no-op."""
    client = open_redis(RedisSettings(), 2)
    publisher = BullmqJobPublisher(client, prefix, SystemClock())
    job = NurtureJob(OrgId("org-1"), ContactId("c-1"), 2, "welcome", {"firstName": "Ada"})
    try:
        first = await publisher.publish(job, "nurture-enr1-step2")
        second = await publisher.publish(job, "nurture-enr1-step2")
        later = await publisher.publish(
            SnapshotJob(OrgId("org-1"), date(2025, 7, 1)), "snap-org1-20250701", datetime.now(UTC) + timedelta(hours=1)
        )
    finally:
        await close_redis(client)
    added = await inspect(prefix, "nurture", "nurture-enr1-step2")
    delayed = await inspect(prefix, "snapshots", "snap-org1-20250701")
    assert (first, second, later) == (True, False, True)
    assert added["data"] == {
        "orgId": "org-1",
        "contactId": "c-1",
        "sequenceStep": 2,
        "template": "welcome",
        "personalization": {"firstName": "Ada"},
    }
    assert added["opts"]["attempts"] == 3
    assert added["opts"]["backoff"] == {"type": "exponential", "delay": 1000}
    assert added["opts"]["removeOnComplete"] == {"age": 86400, "count": 10000}
    assert added["opts"]["removeOnFail"] == {"age": 1209600, "count": 50000}
    assert delayed["state"] == "delayed"
    assert 3_500_000 < delayed["delay"] <= 3_600_000


async def _state_is(prefix: str, job_id: str, state: str) -> bool:
    return await state_of(prefix, QUEUE, job_id) == state


async def _dead_letters(prefix: str, expected: int) -> bool:
    return bool((await node("counts", prefix, "dead-letter"))["counts"]["waiting"] == expected)
