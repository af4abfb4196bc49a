"""Each of the four job types, added by the real npm bullmq, through real worker processes to its effect."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from domain.jobs import ReminderKind
from domain.reminder_scan import reminder_ledger_key
from domain.values import AppointmentId, Channel
from tests.support.crm import (
    create_appointment,
    create_contact,
    create_org,
    enroll_in_sequence,
    reminder_start,
    unique_phone,
)
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import (
    STATUS_CALLBACK,
    Providers,
    WorkerProcess,
    add_jobs,
    inspect_jobs,
    js_date,
    wait_for_state,
    worker_per_queue,
)

pytestmark = pytest.mark.slow  # real workers for each job type: 13-74 s a test measured on the shared machine

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}  # the Node CRM's job options


@pytest.fixture(scope="module")
def running(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[dict[str, WorkerProcess]]:
    """One worker process per queue, for the whole module."""
    with worker_per_queue(env, log_dir) as running:
        yield running


async def test_reminder_from_node_is_one_sms_with_the_ledger_key_and_node_reads_sent(
    running: dict[str, WorkerProcess], providers: Providers, prefix: str, db: Any
) -> None:
    """A process-reminder job from Node sends its message as one SMS carrying the ledger key; Node reads 'sent'."""
    org = await create_org(db)
    phone = unique_phone()
    contact = await create_contact(db, org, "Ada", phone=phone)
    starts_at = reminder_start()
    appointment = await create_appointment(db, org, contact, starts_at)
    message = "Hi Ada, see you at 2pm at Bright Smiles. Reply STOP to opt out."
    data = {
        "orgId": org.id,
        "contactId": contact,
        "appointmentId": appointment,
        "message": message,
        "scheduledFor": js_date(starts_at),
        "reminderType": "3h",
    }

    [job_id] = await add_jobs(prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "reminders", job_id, ("completed", "failed"))

    assert job["state"] == "completed", job["failedReason"]
    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert job["attemptsMade"] == 1
    [sms] = providers.sms_to(phone)
    assert sms["body"] == message
    key = reminder_ledger_key(AppointmentId(appointment), ReminderKind.THREE_HOURS, starts_at, Channel.SMS)
    callback = urlsplit(providers.twilio.status_callbacks[sms["sid"]])
    assert callback._replace(query="").geturl() == STATUS_CALLBACK
    assert parse_qs(callback.query) == {"ledger_key": [key]}
    row = await db.fetchrow("select state, provider_message_id from send_ledger where key = $1", key)
    assert (row["state"], row["provider_message_id"]) == ("sent", sms["sid"])


async def test_nurture_from_node_sends_the_rendered_template_and_queues_the_next_step(
    running: dict[str, WorkerProcess], providers: Providers, prefix: str, db: Any
) -> None:
    """A process-nurture job renders the org's template into one SendGrid mail and queues step 2 with its delay."""
    org = await create_org(db)
    address = f"grace-{org.tag}@example.com"
    contact = await create_contact(db, org, "Grace", email=address, preferred="email", marketing_consent=True)
    await db.execute(
        "insert into message_templates (org_id, name, channel, subject, body) values"
        " ($1, 'welcome', 'email', 'Welcome, {{ first_name }}', 'Hi {{ first_name }}, <b>{{ offer }}</b> awaits.')",
        org.id,
    )
    enrollment = await enroll_in_sequence(
        db, org, contact, channel="email", template="welcome", delays_s=(0, 3 * 86400), sequence="welcome-seq"
    )
    personalization = {"first_name": "Grace", "offer": "10% off & a free whitening"}
    data = {
        "orgId": org.id,
        "contactId": contact,
        "sequenceStep": 1,
        "template": "welcome",
        "personalization": personalization,
    }

    [job_id] = await add_jobs(prefix, "nurture", [{"name": "process-nurture", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "nurture", job_id, ("completed", "failed"))

    assert job["state"] == "completed", job["failedReason"]
    assert job["returnvalue"] == {"outcome": "sent", "channels": ["email"]}
    [mail] = providers.mail_to(address)
    assert mail["subject"] == "Welcome, Grace"
    contents = {part["type"]: part["value"] for part in mail["content"]}
    assert contents["text/plain"] == "Hi Grace, <b>10% off & a free whitening</b> awaits."
    assert contents["text/html"] == "Hi Grace, <b>10% off &amp; a free whitening</b> awaits."
    assert json.dumps(mail).count(f"nurture:{enrollment}:1:email") == 1
    assert _custom_args(mail) == {"ledger_key": f"nurture:{enrollment}:1:email"}
    [following] = await inspect_jobs(prefix, "nurture", [f"nurture_{enrollment}_2"])
    assert following is not None
    assert following["state"] == "delayed"
    assert following["name"] == "process-nurture"
    assert following["data"] == {**data, "sequenceStep": 2}
    assert 3 * 86400_000 - 60_000 < following["delay"] <= 3 * 86400_000
    assert following["opts"]["attempts"] == 3
    assert following["opts"]["backoff"] == {"type": "exponential", "delay": 1000}
    row = await db.fetchrow("select last_step_done, status from nurture_enrollments where id = $1", enrollment)
    assert (row["last_step_done"], row["status"]) == (1, "active")


def _custom_args(mail: dict[str, Any]) -> dict[str, Any]:
    """SendGrid accepts custom_args on the mail or on a personalization; the two merged."""
    found: dict[str, Any] = dict(mail.get("custom_args") or {})
    for personalization in mail["personalizations"]:
        found.update(personalization.get("custom_args") or {})
    return found


async def test_dunning_from_node_in_the_7_to_13_day_stage_sends_email_and_sms(
    running: dict[str, WorkerProcess], providers: Providers, prefix: str, db: Any
) -> None:
    """A process-dunning job 8 days overdue sends the firm email and SMS once each; both ledger rows are SENT."""
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
    link = f"https://pay.example.com/i/{org.tag}"
    data = {"orgId": org.id, "contactId": contact, "amount": 125.5, "daysOverdue": 8, "paymentLink": link}

    [job_id] = await add_jobs(prefix, "dunning", [{"name": "process-dunning", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "dunning", job_id, ("completed", "failed"))

    assert job["state"] == "completed", job["failedReason"]
    assert job["returnvalue"] == {"outcome": "sent", "channels": ["email", "sms"]}
    [mail] = providers.mail_to(address)
    assert mail["subject"] == "Payment overdue: 125.50 USD"
    [sms] = providers.sms_to(phone)
    assert sms["body"] == f"Oak Physio: 125.50 USD is 8 days overdue. Please pay now: {link}"
    rows = await db.fetch("select key, state from send_ledger where org_id = $1 order by key", org.id)
    assert [(r["key"], r["state"]) for r in rows] == [
        (f"dunning:{org.id}:{contact}:7:email", "sent"),
        (f"dunning:{org.id}:{contact}:7:sms", "sent"),
    ]


async def test_snapshot_from_node_stores_the_days_counts_from_the_crm_data(
    running: dict[str, WorkerProcess], prefix: str, db: Any
) -> None:
    """A process-snapshots job stores one daily_snapshots row for the org's local yesterday with the seeded counts."""
    org = await create_org(db)
    zone = ZoneInfo(org.zone)
    day = now_utc().astimezone(zone).date() - timedelta(days=1)

    def at(hour: int, on: date = day) -> datetime:
        return datetime.combine(on, time(hour), zone)

    ada = await create_contact(db, org, "Ada", phone=unique_phone(), created_at=at(9))
    bea = await create_contact(db, org, "Bea", phone=unique_phone(), created_at=at(10))
    await create_contact(db, org, "Old", phone=unique_phone(), created_at=at(10, day - timedelta(days=3)))
    for hour, status in ((9, "completed"), (10, "completed"), (11, "completed"), (12, "no_show"), (13, "cancelled")):
        await create_appointment(db, org, ada, at(hour), status=status, created_at=at(8, day - timedelta(days=5)))
    await create_appointment(db, org, bea, at(15) + timedelta(days=7), created_at=at(11))  # booked that day
    await create_appointment(db, org, bea, at(9) + timedelta(days=1), status="completed")  # the next day
    await db.execute(
        "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, closed_at)"
        " values ($1, 'inv-paid', $2, 9000, 'USD', 'paid', $3, $4)",
        org.id,
        ada,
        at(8, day - timedelta(days=10)),
        at(14),
    )
    await db.execute(
        "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at)"
        " values ($1, 'inv-open', $2, 4000, 'USD', 'open', $3)",
        org.id,
        bea,
        at(8, day - timedelta(days=2)),
    )
    await db.execute(
        "insert into payments (org_id, id, invoice_id, amount_minor, currency, received_at)"
        " values ($1, 'pay-1', 'inv-paid', 9000, 'USD', $2)",
        org.id,
        at(14),
    )
    data = {"orgId": org.id, "date": day.isoformat()}

    [job_id] = await add_jobs(prefix, "snapshots", [{"name": "process-snapshots", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "snapshots", job_id, ("completed", "failed"))

    assert job["state"] == "completed", job["failedReason"]
    assert job["returnvalue"] == {"outcome": "snapshot_stored", "date": day.isoformat()}
    row = await db.fetchrow("select * from daily_snapshots where org_id = $1 and date = $2", org.id, day)
    assert row is not None
    assert {
        name: row[name]
        for name in (
            "appointments_booked",
            "appointments_completed",
            "appointments_cancelled",
            "appointments_no_show",
            "show_rate",
            "new_contacts",
            "revenue_collected_minor",
            "outstanding_minor",
            "currency",
        )
    } == {
        "appointments_booked": 1,
        "appointments_completed": 3,
        "appointments_cancelled": 1,
        "appointments_no_show": 1,
        "show_rate": 0.75,
        "new_contacts": 2,
        "revenue_collected_minor": 9000,
        "outstanding_minor": 4000,
        "currency": "USD",
    }
    assert await db.fetchval("select count(*) from daily_snapshots where org_id = $1", org.id) == 1
