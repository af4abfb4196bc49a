"""Exactly once through the whole path: duplicated jobs, a provider 5xx and a worker killed mid-send each end with
one message at the (fake) provider, across real worker processes.

The dispatcher leaves an unresolved ledger entry alone for its settle period and defers the job until then; bullmq
recovers a dead worker's job in its periodic stalled-job check. Both run as in production, configured through the
workers' environment to the shortest values the settings accept: ``SEND_SETTLE_SECONDS`` 16 (production 60) and
``STALLED_INTERVAL_MS`` 2000 (production 30000) with ``LOCK_DURATION_MS`` 4000 (production 30000).
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from domain.jobs import ReminderKind
from domain.reminder_scan import reminder_ledger_key
from domain.values import AppointmentId, Channel
from tests.support.crm import create_appointment, create_contact, create_org, reminder_start, unique_phone
from tests.support.fakeservers.scripted import Reply, Stall
from tests.support.processes import (
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

pytestmark = pytest.mark.slow  # two worker processes, kills and restarts: 23-52 s a test measured

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
SETTLE_SECONDS = 16  # SEND_SETTLE_SECONDS: the floor the settings enforce
# The stalled check every 2 s, half the system tests' LOCK_DURATION_MS (4000), as production's 30 s is of 30 s or less.
FAST_RECOVERY = {"SEND_SETTLE_SECONDS": str(SETTLE_SECONDS), "STALLED_INTERVAL_MS": "2000"}


@pytest.fixture(scope="module")
def env(providers: Providers, database_url: str, prefix: str) -> dict[str, str]:
    """The module's environment: the system tests' one, with the short settle period and stalled-check interval."""
    return system_env(providers, database_url, prefix, **FAST_RECOVERY)


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


async def test_a_worker_killed_mid_send_leaves_its_claim_and_the_next_worker_finds_the_message_at_twilio(
    providers: Providers, database_url: str, kill_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """SIGKILL while Twilio holds its answer: the claim stays; after the lock expires another worker's stalled check
    takes the job back, and once the claim has settled that worker reconciles the message it finds at Twilio instead
    of sending it again."""
    env = system_env(providers, database_url, kill_prefix, **FAST_RECOVERY)
    data, phone, key = await reminder(db)
    providers.twilio.script(Stall(30))  # Twilio creates the message at once but holds its answer
    lock = ""
    client = redis_asyncio.Redis()
    try:
        victim = WorkerProcess("reminders", env, log_dir).wait_ready()
        try:
            [job_id] = await add_jobs(
                kill_prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}]
            )
            for _ in range(200):
                if providers.sms_to(phone):
                    break
                await asyncio.sleep(0.05)
            assert len(providers.sms_to(phone)) == 1
            lock = f"{kill_prefix}:reminders:{job_id}:lock"
            victims_lock = await client.get(lock)
            assert victims_lock is not None
        finally:
            victim.kill()
        assert await ledger_state(db, key) == "claimed"

        # The rescuer starts at once, so its start-up overlaps the lock's expiry and the job is back well within the
        # settle period. bullmq's stalled check only takes back a job whose lock key is gone, so the victim's lock
        # is either still there or gone (expired): never replaced behind our back.
        with workers("reminders", env, log_dir) as [rescuer]:
            for _ in range(100):  # LOCK_DURATION_MS is 4000
                if await client.get(lock) != victims_lock:
                    break
                await asyncio.sleep(0.1)
            assert await client.get(lock) != victims_lock  # expired: the dead victim could not release it
            job = await wait_for_state(kill_prefix, "reminders", job_id, ("delayed", "completed", "failed"))
            assert job["state"] == "delayed"  # the claim is younger than the settle period: hands off for now
            assert await ledger_state(db, key) == "claimed"
            assert providers.sms_posts_to(phone) == 1

            job = await wait_for_state(
                kill_prefix, "reminders", job_id, ("completed", "failed"), within=SETTLE_SECONDS + 15
            )
    finally:
        await client.aclose()

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert job["attemptsMade"] == 1  # neither the stall nor the deferral spent an attempt
    assert providers.sms_posts_to(phone) == 1
    lookups = [r for r in providers.twilio.requests if r.method == "GET" and r.query.get("To") == phone]
    assert len(lookups) == 1  # found by reconciliation, not re-sent
    [sms] = providers.sms_to(phone)
    row = await db.fetchrow("select state, provider_message_id from send_ledger where key = $1", key)
    assert (row["state"], row["provider_message_id"]) == ("sent", sms["sid"])
    assert "job_completed" in rescuer.output()
