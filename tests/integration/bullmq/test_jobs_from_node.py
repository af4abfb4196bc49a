"""Jobs added by the real npm bullmq are processed by our worker, and Node reads back what happened."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog.testing

from adapters.bullmq.patched_worker import NOT_JSON_REASON
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from domain.errors import InvalidJob
from domain.jobs import DunningJob, Job, JobName, NurtureJob, QueueName, ReminderJob, ReminderKind, SnapshotJob
from domain.outcomes import Outcome, Published, Sent, Skipped, SnapshotStored, Undeliverable
from domain.values import Channel
from tests.support.queues import add, eventually, inspect, node, state_of, worker_running

RETRIES = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
PHONE = "+14155550123"
SECRET_MESSAGE = "Hi Ada, see you at 3pm"


def recording(outcome: Outcome, seen: list[Job]) -> Handler:
    async def handle(job: Job) -> Outcome:
        seen.append(job)
        return outcome

    return handle


def all_handlers(seen: list[Job]) -> dict[JobName, Handler]:
    return {
        JobName.REMINDER: recording(Sent((Channel.SMS,)), seen),
        JobName.SCAN_APPOINTMENTS: recording(Published(2, 1), seen),
        JobName.NURTURE: recording(Skipped("opted_out"), seen),
        JobName.DUNNING: recording(Undeliverable("no_channel", "21610"), seen),
        JobName.SNAPSHOT: recording(SnapshotStored("2025-07-01"), seen),
        JobName.FAN_OUT_SNAPSHOTS: recording(Published(0), seen),
        JobName.MAINTAIN_QUEUES: recording(Published(0), seen),
    }


def handlers_of(queue: QueueName, seen: list[Job]) -> dict[JobName, Handler]:
    from domain.jobs import JOB_TYPES

    return {name: h for name, h in all_handlers(seen).items() if JOB_TYPES[name].queue is queue}


README_JOBS: list[tuple[QueueName, JobName, dict[str, Any]]] = [
    (
        QueueName.REMINDERS,
        JobName.REMINDER,
        {
            "orgId": "org-1",
            "contactId": "c-1",
            "appointmentId": "a-1",
            "message": SECRET_MESSAGE,
            "scheduledFor": {"$date": "2025-07-01T14:30:00.000Z"},
            "reminderType": "24h",
        },
    ),
    (
        QueueName.NURTURE,
        JobName.NURTURE,
        {"orgId": "org-1", "contactId": "c-1", "sequenceStep": 2, "template": "welcome", "personalization": {"a": 1}},
    ),
    (
        QueueName.DUNNING,
        JobName.DUNNING,
        {"orgId": "org-1", "contactId": "c-1", "amount": 125.5, "daysOverdue": 7, "paymentLink": "https://p.example/x"},
    ),
    (QueueName.SNAPSHOTS, JobName.SNAPSHOT, {"orgId": "org-1", "date": "2025-07-01"}),
]


async def test_each_readme_job_type_completes_and_node_reads_the_return_value(prefix: str) -> None:
    """Each of the four README job shapes added by Node completes, and Job.fromId shows the outcome summary."""
    seen: list[Job] = []
    queues = [queue for queue, _, _ in README_JOBS]
    async with (
        worker_running(WorkerConfig(queue=queues[0], prefix=prefix), handlers_of(queues[0], seen)),
        worker_running(WorkerConfig(queue=queues[1], prefix=prefix), handlers_of(queues[1], seen)),
        worker_running(WorkerConfig(queue=queues[2], prefix=prefix), handlers_of(queues[2], seen)),
        worker_running(WorkerConfig(queue=queues[3], prefix=prefix), handlers_of(queues[3], seen)),
    ):
        ids = [await add(prefix, str(q), str(name), data, **RETRIES) for q, name, data in README_JOBS]
        for (queue, _, _), job_id in zip(README_JOBS, ids, strict=True):
            await eventually(lambda q=queue, i=job_id: _is(prefix, q, i, "completed"))
        jobs = [await inspect(prefix, str(q), i) for (q, _, _), i in zip(README_JOBS, ids, strict=True)]

    assert [job["returnvalue"] for job in jobs] == [
        {"outcome": "sent", "channels": ["sms"]},
        {"outcome": "skipped", "reason": "opted_out"},
        {"outcome": "undeliverable", "reason": "no_channel", "code": "21610"},
        {"outcome": "snapshot_stored", "date": "2025-07-01"},
    ]
    assert all(job["state"] == "completed" and job["attemptsMade"] == 1 for job in jobs)
    by_type = {type(job): job for job in seen}
    reminder = by_type[ReminderJob]
    assert isinstance(reminder, ReminderJob)
    assert reminder.scheduled_for == datetime(2025, 7, 1, 14, 30, tzinfo=UTC)
    assert reminder.reminder_type is ReminderKind.DAY_BEFORE
    assert reminder.message == SECRET_MESSAGE
    nurture = by_type[NurtureJob]
    assert isinstance(nurture, NurtureJob)
    assert nurture.sequence_step == 2
    dunning = by_type[DunningJob]
    assert isinstance(dunning, DunningJob)
    assert dunning.amount == Decimal("125.5")
    snapshot = by_type[SnapshotJob]
    assert isinstance(snapshot, SnapshotJob)
    assert snapshot.date.isoformat() == "2025-07-01"


async def _is(prefix: str, queue: QueueName | str, job_id: str, state: str) -> bool:
    return await state_of(prefix, str(queue), job_id) == state


async def test_malformed_jobs_fail_once_with_a_readable_reason_and_one_dead_letter_copy(prefix: str) -> None:
    """Missing field, wrong type and unknown name each fail after one attempt, naming the field, into dead-letter."""
    seen: list[Job] = []
    reminder = dict(README_JOBS[0][2])
    del reminder["appointmentId"]
    reminder["contactPhone"] = PHONE
    bad_type = {**README_JOBS[0][2], "reminderType": 24}
    queue = str(QueueName.REMINDERS)
    async with worker_running(
        WorkerConfig(queue=QueueName.REMINDERS, prefix=prefix), handlers_of(QueueName.REMINDERS, seen)
    ):
        ids = [
            await add(prefix, queue, "process-reminder", reminder, **RETRIES),
            await add(prefix, queue, "process-reminder", bad_type, **RETRIES),
            await add(prefix, queue, "process-remindr", README_JOBS[0][2], **RETRIES),
        ]
        for job_id in ids:
            await eventually(lambda i=job_id: _is(prefix, queue, i, "failed"))
        jobs = [await inspect(prefix, queue, i) for i in ids]
        await eventually(lambda: _count_dead_letters(prefix, 3))
        copies = await node("inspect", prefix, "dead-letter", ids=[f"reminders.{i}" for i in ids])

    assert seen == []
    assert [job["attemptsMade"] for job in jobs] == [1, 1, 1]
    reasons = [job["failedReason"] for job in jobs]
    assert "appointmentId" in reasons[0]
    assert "reminderType" in reasons[1]
    assert "job name" in reasons[2]
    assert all(reason.startswith("invalid job:") for reason in reasons)
    assert PHONE not in str(reasons)
    assert SECRET_MESSAGE not in str(reasons)
    assert SECRET_MESSAGE not in str([job["stacktrace"] for job in jobs])
    assert [copy["data"]["jobId"] for copy in copies["jobs"]] == ids
    assert [copy["data"]["failedReason"] for copy in copies["jobs"]] == reasons
    assert all(copy["data"]["sourceQueue"] == "reminders" for copy in copies["jobs"])


async def _count_dead_letters(prefix: str, expected: int) -> bool:
    counts = (await node("counts", prefix, "dead-letter"))["counts"]
    return bool(counts["waiting"] == expected)


async def test_job_data_that_is_not_json_is_failed_and_parked_instead_of_stalling(prefix: str) -> None:
    """A job whose stored data is not JSON fails at once as invalid, with its raw text kept in dead-letter."""
    import redis.asyncio as redis_asyncio

    queue = str(QueueName.SNAPSHOTS)
    job_id = await add(prefix, queue, "process-snapshots", {"orgId": "org-1", "date": "2025-07-01"}, **RETRIES)
    client = redis_asyncio.Redis(decode_responses=True)
    await client.hset(f"{prefix}:{queue}:{job_id}", "data", "{not json")
    await client.aclose()
    seen: list[Job] = []
    async with worker_running(
        WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), handlers_of(QueueName.SNAPSHOTS, seen)
    ):
        await eventually(lambda: _is(prefix, queue, job_id, "failed"))
        await eventually(lambda: _count_dead_letters(prefix, 1))
    client = redis_asyncio.Redis(decode_responses=True)
    job = await client.hgetall(f"{prefix}:{queue}:{job_id}")  # Node's Job.fromId cannot parse it either
    await client.aclose()
    copy = (await node("inspect", prefix, "dead-letter", ids=[f"snapshots.{job_id}"]))["jobs"][0]
    assert (job["failedReason"], job["atm"], seen) == (NOT_JSON_REASON, "1", [])
    assert copy["data"]["data"] == "{not json"


async def test_invalid_job_raised_by_a_handler_is_not_retried(prefix: str) -> None:
    """A handler's own InvalidJob fails the job after one attempt, like a decoding error."""
    calls: list[Job] = []

    async def refuse(job: Job) -> Outcome:
        calls.append(job)
        raise InvalidJob("date", "is before the organization existed")

    handlers = handlers_of(QueueName.SNAPSHOTS, [])
    handlers[JobName.SNAPSHOT] = refuse
    queue = str(QueueName.SNAPSHOTS)
    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), handlers):
        job_id = await add(prefix, queue, "process-snapshots", {"orgId": "o", "date": "2025-07-01"}, **RETRIES)
        await eventually(lambda: _is(prefix, queue, job_id, "failed"))
        await eventually(lambda: _count_dead_letters(prefix, 1))
    job = await inspect(prefix, queue, job_id)
    assert (len(calls), job["attemptsMade"]) == (1, 1)
    assert job["failedReason"] == "InvalidJob: invalid job: date is before the organization existed"


async def test_two_workers_consuming_failing_jobs_leave_one_dead_letter_copy_each(prefix: str) -> None:
    """Two workers on one queue failing 20 jobs leave exactly 20 dead-letter copies."""
    queue = str(QueueName.SNAPSHOTS)
    seen: list[Job] = []
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix, concurrency=5)
    async with (
        worker_running(config, handlers_of(QueueName.SNAPSHOTS, seen)),
        worker_running(config, handlers_of(QueueName.SNAPSHOTS, seen)),
    ):
        jobs = [{"name": "process-snapshots", "data": {"orgId": "o", "date": "bad"}, "opts": RETRIES}] * 20
        await node("add", prefix, queue, jobs=jobs)
        await eventually(lambda: _count_failed(prefix, queue, 20))
        await eventually(lambda: _count_dead_letters(prefix, 20))
        await asyncio.sleep(0.5)  # any late duplicate would land now
    assert await _count_dead_letters(prefix, 20)


async def _count_failed(prefix: str, queue: str, expected: int) -> bool:
    return bool((await node("counts", prefix, queue))["counts"]["failed"] == expected)


async def test_unknown_keys_of_a_newer_crm_are_named_in_the_log_without_their_values(prefix: str) -> None:
    """A job carrying a field this worker does not know completes, and the log names the field, never its value."""
    seen: list[Job] = []
    data = {"orgId": "org-1", "date": "2025-07-01", "timezoneHint": "Ada's secret note"}
    with structlog.testing.capture_logs() as logs:
        async with worker_running(
            WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), handlers_of(QueueName.SNAPSHOTS, seen)
        ):
            job_id = await add(prefix, "snapshots", "process-snapshots", data, **RETRIES)
            await eventually(lambda: _is(prefix, QueueName.SNAPSHOTS, job_id, "completed"))
    named = [entry for entry in logs if entry["event"] == "job_has_unknown_keys"]
    assert [entry["keys"] for entry in named] == [["timezoneHint"]]
    assert "secret note" not in repr(logs)
