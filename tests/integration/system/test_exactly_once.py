"""Exactly once through the whole path: duplicated jobs, a provider 5xx and a worker killed mid-send each end with
one message at the (fake) provider, across real worker processes.

The dispatcher leaves an unresolved ledger entry alone for its settle period (60 s, fixed in the composition root)
and defers the job until then. The 500 test waits that minute in real time; the kill test shortens both waits of
production length, each by an explicit, named step:
- ``fast_forward_settle`` moves the ledger entry's timestamps back by the settle period and promotes the deferred
  job, as if the minute had passed;
- bullmq recovers a dead worker's job in its periodic stalled-job check (every 30 s; the composition root does not
  configure the interval): ``run_stalled_check`` runs that same check (bullmq's own script) right away.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from bullmq import Queue

from domain.jobs import ReminderKind
from domain.reminder_scan import reminder_ledger_key
from domain.values import AppointmentId, Channel
from tests.fakeservers.scripted import Reply, Stall
from tests.integration.system.support import (
    Providers,
    WorkerProcess,
    add_jobs,
    delete_keys,
    js_date,
    node_jobs,
    system_env,
    token,
    wait_for_state,
    workers,
)
from tests.integration.system.world import create_appointment, create_contact, create_org, reminder_start, unique_phone

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
SETTLE_SECONDS = 60  # entrypoints/bootstrap.py: Dispatcher(..., settle=timedelta(seconds=60))


@pytest.fixture(scope="module")
def pair(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[list[WorkerProcess]]:
    """Two reminders worker processes on the module's prefix."""
    with workers("reminders", env, log_dir, count=2) as started:
        yield started


async def reminder(db: Any) -> tuple[dict[str, Any], str, str]:
    """A seeded appointment's reminder job data, the contact's phone and the SMS ledger key."""
    org = await create_org(db)
    phone = unique_phone()
    contact = await create_contact(db, org, "Ada", phone=phone)
    starts_at = reminder_start()
    appointment = await create_appointment(db, org, contact, starts_at)
    data = {
        "orgId": org.id,
        "contactId": contact,
        "appointmentId": appointment,
        "message": f"Hi Ada, see you soon ({org.tag}).",
        "scheduledFor": js_date(starts_at),
        "reminderType": "3h",
    }
    key = reminder_ledger_key(AppointmentId(appointment), ReminderKind.THREE_HOURS, starts_at, Channel.SMS)
    return data, phone, key


async def ledger_state(db: Any, key: str) -> str | None:
    state: str | None = await db.fetchval("select state from send_ledger where key = $1", key)
    return state


async def deferred_past_backoff(prefix: str, job_id: str) -> dict[str, Any]:
    """The job once it waits for longer than a retry backoff (a deferral until the ledger entry settles)."""
    for _ in range(100):
        job = await wait_for_state(prefix, "reminders", job_id, ("delayed", "waiting", "active", "completed", "failed"))
        if job["state"] in ("completed", "failed") or (job["state"] == "delayed" and job["delay"] > 10_000):
            return job
        await asyncio.sleep(0.2)  # the failed attempt's backoff (1 s) runs out, then the retry defers
    raise AssertionError(f"job {job_id} never deferred")


async def fast_forward_settle(db: Any, key: str, prefix: str, job_ids: list[str]) -> None:
    """Age the ledger entry past the settle period and run the deferred jobs now (see the module docstring)."""
    await db.execute(
        "update send_ledger set claimed_at = claimed_at - make_interval(secs => $2),"
        " updated_at = updated_at - make_interval(secs => $2) where key = $1",
        key,
        SETTLE_SECONDS + 1,
    )
    await node_jobs("promote", prefix, "reminders", ids=job_ids)


async def test_five_duplicate_jobs_across_two_worker_processes_make_one_twilio_request(
    pair: list[WorkerProcess], providers: Providers, prefix: str, db: Any
) -> None:
    """Five Node jobs with the same reminder, taken by two worker processes at once, make exactly one SMS request."""
    data, phone, key = await reminder(db)
    providers.twilio.script(Stall(1.0))  # the first request is still in flight while the duplicates claim

    ids = await add_jobs(prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}] * 5)
    assert len(set(ids)) == 5
    jobs = [await wait_for_state(prefix, "reminders", i, ("completed", "delayed", "failed")) for i in ids]
    deferred = [job["id"] for job in jobs if job["state"] == "delayed"]
    await node_jobs("promote", prefix, "reminders", ids=deferred)  # they would run again once settled
    jobs = [await wait_for_state(prefix, "reminders", i, ("completed", "failed")) for i in ids]

    assert providers.sms_posts_to(phone) == 1
    assert len(providers.sms_to(phone)) == 1
    assert [job["returnvalue"] for job in jobs] == [{"outcome": "sent", "channels": ["sms"]}] * 5
    assert [job["attemptsMade"] for job in jobs] == [1] * 5
    assert await ledger_state(db, key) == "sent"
    handled = {w.pid: handled_jobs(w, ids) for w in pair}
    assert set().union(*handled.values()) == set(ids)
    assert all(handled.values()), f"one process took every job: {handled}"


def handled_jobs(worker: WorkerProcess, ids: list[str]) -> set[str]:
    """Which of ``ids`` this worker process completed or deferred, by its log."""
    events = ("job_completed", "job_deferred")
    return {e["job_id"] for e in worker.log_events() if e.get("event") in events and e.get("job_id") in ids}


async def test_a_twilio_500_is_reconciled_at_twilio_before_the_retry_sends(
    pair: list[WorkerProcess], providers: Providers, prefix: str, db: Any
) -> None:
    """After a 500 the retried job looks the message up at Twilio (none) before sending it: one message in the end."""
    data, phone, key = await reminder(db)
    providers.twilio.script(Reply(500, {"code": 20500, "message": "Internal Server Error", "status": 500}))
    requests_before = len(providers.twilio.requests)

    [job_id] = await add_jobs(prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
    job = await deferred_past_backoff(prefix, job_id)
    assert await ledger_state(db, key) == "unknown"
    assert job["failedReason"] == "DeliveryOutcomeUnknown: twilio answered HTTP 500 (provider code 20500)"
    assert providers.sms_posts_to(phone) == 1  # the retry did not re-send blindly
    assert providers.sms_to(phone) == []

    assert job["delay"] > (SETTLE_SECONDS - 5) * 1000  # until the ambiguous answer has settled: real time here

    job = await wait_for_state(prefix, "reminders", job_id, ("completed", "failed"), within=SETTLE_SECONDS + 15)

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert job["attemptsMade"] == 2  # the failed attempt and the one that completed; the deferral spent none
    assert len(providers.sms_to(phone)) == 1
    to_twilio = [(r.method, r.query.get("To")) for r in providers.twilio.requests[requests_before:]]
    assert to_twilio == [("POST", None), ("GET", phone), ("POST", None)]  # the look-up came before the re-send
    assert await ledger_state(db, key) == "sent"


@pytest.fixture
async def kill_prefix() -> AsyncIterator[str]:
    """A prefix of the kill test's own: its job must reach the worker that is killed, not the module's pair."""
    name = f"test-system-kill-{token()}"
    yield name
    await delete_keys(f"{name}:*")


async def run_stalled_check(prefix: str, queue: str) -> None:
    """Run bullmq's stalled-job check now, as a worker's 30 s timer would (see the module docstring)."""
    client = redis_asyncio.Redis()
    bull_queue = Queue(queue, {"prefix": prefix, "connection": client})
    try:
        await client.delete(f"{prefix}:{queue}:stalled-check")  # the check's own throttle
        await bull_queue.backend.moveStalledJobsToWait(1, 30_000)
    finally:
        await bull_queue.close()
        await client.aclose()


async def test_a_worker_killed_mid_send_leaves_its_claim_and_the_next_worker_finds_the_message_at_twilio(
    providers: Providers, database_url: str, kill_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """SIGKILL while Twilio holds its answer: the claim stays; after the lock expires another worker reconciles the
    message it finds at Twilio instead of sending it again."""
    env = system_env(providers, database_url, kill_prefix)
    data, phone, key = await reminder(db)
    providers.twilio.script(Stall(30))  # Twilio creates the message at once but holds its answer
    victim = WorkerProcess("reminders", env, log_dir).wait_ready()
    try:
        [job_id] = await add_jobs(kill_prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
        for _ in range(200):
            if providers.sms_to(phone):
                break
            await asyncio.sleep(0.05)
        assert len(providers.sms_to(phone)) == 1
    finally:
        victim.kill()

    assert await ledger_state(db, key) == "claimed"
    lock = f"{kill_prefix}:reminders:{job_id}:lock"
    client = redis_asyncio.Redis()
    try:
        for _ in range(100):  # LOCK_DURATION_MS is 4000
            if not await client.exists(lock):
                break
            await asyncio.sleep(0.1)
        assert not await client.exists(lock)
    finally:
        await client.aclose()

    with workers("reminders", env, log_dir) as [rescuer]:
        await run_stalled_check(kill_prefix, "reminders")  # marks the active job as possibly stalled
        await run_stalled_check(kill_prefix, "reminders")  # its lock is gone: back to wait
        job = await wait_for_state(kill_prefix, "reminders", job_id, ("delayed", "completed", "failed"))
        assert job["state"] == "delayed"  # the claim is younger than the settle period: hands off for now
        assert await ledger_state(db, key) == "claimed"
        assert providers.sms_posts_to(phone) == 1

        await fast_forward_settle(db, key, kill_prefix, [job_id])
        job = await wait_for_state(kill_prefix, "reminders", job_id, ("completed", "failed"))

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert job["attemptsMade"] == 1  # neither the stall nor the deferral spent an attempt
    assert providers.sms_posts_to(phone) == 1
    lookups = [r for r in providers.twilio.requests if r.method == "GET" and r.query.get("To") == phone]
    assert len(lookups) == 1  # found by reconciliation, not re-sent
    [sms] = providers.sms_to(phone)
    row = await db.fetchrow("select state, provider_message_id from send_ledger where key = $1", key)
    assert (row["state"], row["provider_message_id"]) == ("sent", sms["sid"])
    assert "job_completed" in rescuer.output()
