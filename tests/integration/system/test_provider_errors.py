"""Provider error answers through real worker processes: what the job, the ledger and the next job make of them."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.support.crm import (
    Org,
    create_appointment,
    create_contact,
    create_org,
    reminder_start,
    unique_phone,
)
from tests.support.fakeservers.providers import now_utc
from tests.support.fakeservers.twilio import twilio_error
from tests.support.processes import (
    Providers,
    WorkerProcess,
    add_jobs,
    delete_keys,
    js_date,
    system_env,
    token,
    wait_for_state,
    workers,
)

pytestmark = pytest.mark.slow  # real workers against scripted provider errors: 32-41 s a test measured

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
EXIT_CONFIGURATION = 78


@pytest.fixture(scope="module")
def reminders_worker(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[WorkerProcess]:
    with workers("reminders", env, log_dir) as [worker]:
        yield worker


async def reminder_job(db: Any, org: Org, contact: str) -> dict[str, Any]:
    starts_at = reminder_start()
    appointment = await create_appointment(db, org, contact, starts_at)
    return {
        "name": "process-reminder",
        "data": {
            "orgId": org.id,
            "contactId": contact,
            "appointmentId": appointment,
            "message": "Hi Ada, see you soon at Bright Smiles.",
            "scheduledFor": js_date(starts_at),
            "reminderType": "3h",
        },
        "opts": RETRY,
    }


async def test_twilio_21610_suppresses_the_number_falls_back_to_email_and_the_next_job_sends_no_sms(
    reminders_worker: WorkerProcess, providers: Providers, prefix: str, db: Any
) -> None:
    """Twilio 21610 (opted out): the reminder goes by email, a suppression is stored, the next reminder skips SMS."""
    org = await create_org(db)
    phone, address = unique_phone(), f"ada-{org.tag}@example.com"
    contact = await create_contact(db, org, "Ada", phone=phone, email=address, preferred="sms")
    providers.twilio.script(twilio_error(400, 21610, f"Attempt to send to unsubscribed recipient {phone}"))

    [first] = await add_jobs(prefix, "reminders", [await reminder_job(db, org, contact)])
    job = await wait_for_state(prefix, "reminders", first, ("completed", "failed"))

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["email"]}
    assert job["attemptsMade"] == 1
    assert providers.sms_posts_to(phone) == 1
    assert providers.sms_to(phone) == []
    assert len(providers.mail_to(address)) == 1
    suppression = await db.fetchrow("select channel, reason from suppressions where address = $1", phone)
    assert (suppression["channel"], suppression["reason"]) == ("sms", "opted_out")
    states = await db.fetch("select channel, state, reason from send_ledger where org_id = $1", org.id)
    assert sorted((r["channel"], r["state"]) for r in states) == [("email", "sent"), ("sms", "failed")]

    [second] = await add_jobs(prefix, "reminders", [await reminder_job(db, org, contact)])
    job = await wait_for_state(prefix, "reminders", second, ("completed", "failed"))

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["email"]}
    assert providers.sms_posts_to(phone) == 1  # no second SMS request
    assert len(providers.mail_to(address)) == 2
    output = reminders_worker.output()
    assert phone not in output
    assert phone[1:] not in output
    assert address not in output


async def test_twilio_429_with_retry_after_defers_the_job_without_an_attempt_then_sends_once(
    reminders_worker: WorkerProcess, providers: Providers, prefix: str, db: Any
) -> None:
    """Twilio 429 with Retry-After: 2 moves the job to delayed (no attempt spent) for 2 s; then one SMS goes out."""
    org = await create_org(db)
    phone = unique_phone()
    contact = await create_contact(db, org, "Ada", phone=phone)
    providers.twilio.script(twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "2"}))

    [job_id] = await add_jobs(prefix, "reminders", [await reminder_job(db, org, contact)])
    deferred = await wait_for_state(prefix, "reminders", job_id, ("delayed", "completed", "failed"))
    assert deferred["state"] == "delayed"
    assert deferred["attemptsMade"] == 0
    assert 1_000 <= deferred["delay"] <= 2_000
    assert providers.sms_to(phone) == []
    assert await db.fetchval("select count(*) from send_ledger where org_id = $1", org.id) == 0  # claim released

    job = await wait_for_state(prefix, "reminders", job_id, ("completed", "failed"))

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert job["attemptsMade"] == 1
    assert job["processedOn"] - deferred["processedOn"] >= 1_000
    assert providers.sms_posts_to(phone) == 2  # the throttled request and the one that went through
    assert len(providers.sms_to(phone)) == 1


@pytest.fixture
async def own_prefix() -> AsyncIterator[str]:
    name = f"test-system-401-{token()}"
    yield name
    await delete_keys(f"{name}:*")


async def test_sendgrid_401_stops_the_worker_with_exit_78_and_puts_the_job_back_unspent(
    providers: Providers, database_url: str, own_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """SendGrid 401 (a revoked key): the worker exits 78 with one alert; the job waits delayed, attempts unspent."""
    env = system_env(providers, database_url, own_prefix, SENDGRID_API_KEY="SG.revoked-key")
    org = await create_org(db, name="Oak Physio")
    address = f"alan-{org.tag}@example.com"
    contact = await create_contact(db, org, "Alan", email=address, preferred="email")
    await db.execute(
        "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at)"
        " values ($1, 'inv-1', $2, 5000, 'USD', 'open', $3)",
        org.id,
        contact,
        now_utc() - timedelta(days=20),
    )
    data = {
        "orgId": org.id,
        "contactId": contact,
        "amount": 50,
        "daysOverdue": 3,
        "paymentLink": f"https://pay.example.com/i/{org.tag}",
    }
    worker = WorkerProcess("dunning", env, log_dir).wait_ready()
    try:
        [job_id] = await add_jobs(own_prefix, "dunning", [{"name": "process-dunning", "data": data, "opts": RETRY}])
        code = worker.wait_exit(30)
    finally:
        worker.stop()

    assert code == EXIT_CONFIGURATION
    job = await wait_for_state(own_prefix, "dunning", job_id, ("delayed", "completed", "failed"))
    assert job["state"] == "delayed"
    assert job["attemptsMade"] == 0
    assert not job.get("failedReason")
    assert job["delay"] >= 30_000  # long enough for the supervisor to notice, short enough to resume by itself
    assert providers.mail_to(address) == []
    assert await db.fetchval("select count(*) from send_ledger where org_id = $1", org.id) == 0  # claim released
    alerts = [e for e in worker.log_events() if e.get("event") == "worker_configuration_error"]
    assert len(alerts) == 1
    assert "401" in alerts[0]["error"]
    assert address not in worker.output()
