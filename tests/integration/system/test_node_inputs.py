"""Inputs in the forms JavaScript and node-postgres produce, added by the real npm bullmq and run by real worker
processes (with tracing on): float noise and decimal strings in money, text cut inside an emoji, invalid payloads
for unknown orgs, message bodies over the SMS limit; and a start-up log free of OpenTelemetry warnings."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters.observability.metrics import read_recorded
from tests.support.crm import create_appointment, create_contact, create_org, reminder_start, unique_phone
from tests.support.fakeservers.otlp import FakeOtlpCollector
from tests.support.fakeservers.providers import now_utc, running
from tests.support.fakeservers.scripted import ScriptedServer
from tests.support.processes import (
    Providers,
    WorkerProcess,
    add_jobs,
    js_date,
    node_jobs,
    system_env,
    wait_for_state,
    workers,
)
from tests.support.queues import eventually

pytestmark = pytest.mark.slow  # real workers fed by the npm producer: 5-22 s a test measured on the shared machine

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}


class TracedProviders(Providers):
    """The fake providers plus a local OTLP collector, so the workers start with tracing on."""

    def __init__(self) -> None:
        super().__init__("fake-providers-traced")
        self.collector = FakeOtlpCollector()

    def servers(self) -> tuple[ScriptedServer, ...]:
        return (*super().servers(), self.collector)


@pytest.fixture(scope="module")
def providers() -> Iterator[TracedProviders]:
    with running(TracedProviders()) as found:
        yield found


@pytest.fixture(scope="module")
def env(providers: TracedProviders, database_url: str, prefix: str) -> dict[str, str]:
    return system_env(
        providers, database_url, prefix, OTEL_EXPORTER_OTLP_ENDPOINT=providers.collector.base_url, RELEASE=None
    )


@pytest.fixture(scope="module")
def started(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[dict[str, WorkerProcess]]:
    with workers("reminders", env, log_dir) as [reminders], workers("dunning", env, log_dir) as [dunning]:
        yield {"reminders": reminders, "dunning": dunning}


async def dead_letter_ids(prefix: str) -> set[str]:
    found = (await node_jobs("list", prefix, "dead-letter", states=["waiting"]))["jobs"]
    return {job["id"] for job in found}


def test_worker_start_up_logs_no_opentelemetry_warning(started: dict[str, WorkerProcess]) -> None:
    """With tracing configured and no RELEASE set, no worker logs "Invalid type ..." from OpenTelemetry (the
    default release was once a member_descriptor set as the resource's service.version)."""
    for worker in started.values():
        events = worker.log_events()
        assert any(e.get("event") == "worker_started" for e in events), worker.output()[-2000:]
        assert not [e for e in events if "Invalid type" in str(e.get("event"))], worker.output()[-2000:]
        assert not [e for e in events if str(e.get("logger", "")).startswith("opentelemetry")]


async def _reminder(db: Any, message: object) -> tuple[dict[str, Any], str]:
    org = await create_org(db)
    phone = unique_phone()
    contact = await create_contact(db, org, "Ada", phone=phone)
    starts_at = reminder_start()
    appointment = await create_appointment(db, org, contact, starts_at)
    data = {
        "orgId": org.id,
        "contactId": contact,
        "appointmentId": appointment,
        "message": message,
        "scheduledFor": js_date(starts_at),
        "reminderType": "3h",
    }
    return data, phone


async def test_text_cut_inside_an_emoji_is_repaired_and_sent_once(
    started: dict[str, WorkerProcess], providers: TracedProviders, prefix: str, db: Any
) -> None:
    """A message ending in a lone surrogate (JS ``slice`` through an emoji) completes on its first attempt as one
    SMS with U+FFFD in its place, its ledger row sent, and its segments counted."""
    data, phone = await _reminder(db, "See you tomorrow \ud83e")

    [job_id] = await add_jobs(prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "reminders", job_id, ("completed", "failed"))

    assert job["state"] == "completed", job["failedReason"]
    assert job["attemptsMade"] == 1
    [sms] = providers.sms_to(phone)
    assert sms["body"] == "See you tomorrow \ufffd"
    rows = await db.fetch("select state from send_ledger where org_id = $1", data["orgId"])
    assert [r["state"] for r in rows] == ["sent"]
    client = Redis(decode_responses=True)
    try:

        async def segments_counted() -> bool:
            samples = {(s.metric, s.labels): s.value for s in await read_recorded(client, prefix)}
            return samples.get(("sms_segments_total", (("encoding", "ucs2"), ("provider", "twilio"))), 0) >= 1

        await eventually(segments_counted, within=15)
    finally:
        await client.aclose()


async def test_a_message_over_the_sms_limit_fails_once_readably_before_any_claim(
    started: dict[str, WorkerProcess], providers: TracedProviders, prefix: str, db: Any
) -> None:
    """A 512,000-character message from Node fails on its first attempt with a reason naming the field and the
    limit, is dead-lettered, and leaves no ledger row and no SMS."""
    data, phone = await _reminder(db, {"$repeat": ["Reminder! ", 51_200]})

    [job_id] = await add_jobs(prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "reminders", job_id, ("completed", "failed"))

    assert (job["state"], job["attemptsMade"]) == ("failed", 1)
    assert job["failedReason"].endswith("invalid job: message is longer than 1600 characters, the SMS body limit")
    assert providers.sms_to(phone) == []
    assert await db.fetch("select key from send_ledger where org_id = $1", data["orgId"]) == []
    assert f"reminders.{job_id}" in await dead_letter_ids(prefix)


async def _dunning(db: Any, amount: object) -> tuple[dict[str, Any], str]:
    org = await create_org(db, name="Oak Physio")
    phone = unique_phone()
    contact = await create_contact(db, org, "Alan", phone=phone)
    await db.execute(
        "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, due_at)"
        " values ($1, 'inv-1', $2, 50000, 'USD', 'open', $3, $4)",
        org.id,
        contact,
        now_utc() - timedelta(days=38),
        now_utc() - timedelta(days=8),
    )
    link = f"https://pay.example.com/i/{org.tag}"
    return {"orgId": org.id, "contactId": contact, "amount": amount, "daysOverdue": 8, "paymentLink": link}, phone


@pytest.mark.parametrize(
    "amount",
    [41.1 + 41.1 + 41.1, "123.30", "123.3", 123.3],
    ids=["float-noise", "numeric-string", "short-string", "number"],
)
async def test_amounts_in_javascript_forms_are_sent_as_their_cents(
    started: dict[str, WorkerProcess], providers: TracedProviders, prefix: str, db: Any, amount: object
) -> None:
    """``123.30000000000001`` (41.1 + 41.1 + 41.1) and node-postgres' ``"123.30"`` are 123.30 USD: the notice goes
    out once on the first attempt."""
    data, phone = await _dunning(db, amount)

    [job_id] = await add_jobs(prefix, "dunning", [{"name": "process-dunning", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "dunning", job_id, ("completed", "failed"))

    assert job["state"] == "completed", job["failedReason"]
    assert job["attemptsMade"] == 1
    [sms] = providers.sms_to(phone)
    assert "123.30 USD is 8 days overdue" in sms["body"]


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (123.305, "invalid job: amount has more than 2 decimal places"),
        (123.3000001, "invalid job: amount has more than 3 decimal places"),
        ("123.301", "invalid job: amount has more than 2 decimal places"),
        ("123,30", "invalid job: amount is a string that is not a plain decimal number"),
        ("1.233e2", "invalid job: amount is a string that is not a plain decimal number"),
    ],
    ids=["float-half-cent", "float-not-noise", "string-sub-cent", "string-comma", "string-exponent"],
)
async def test_amounts_that_are_not_cents_fail_once_naming_the_field_and_form(
    started: dict[str, WorkerProcess], providers: TracedProviders, prefix: str, db: Any, amount: object, reason: str
) -> None:
    """What is not within noise of a cent, or a string that is not a plain decimal, fails on its first attempt,
    names the field and the form (never the value), is dead-lettered, and sends nothing."""
    data, phone = await _dunning(db, amount)

    [job_id] = await add_jobs(prefix, "dunning", [{"name": "process-dunning", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "dunning", job_id, ("completed", "failed"))

    assert (job["state"], job["attemptsMade"]) == ("failed", 1)
    assert job["failedReason"].endswith(reason)
    assert str(amount) not in job["failedReason"]
    assert providers.sms_to(phone) == []
    assert f"dunning.{job_id}" in await dead_letter_ids(prefix)


async def test_an_invalid_dunning_job_for_an_unknown_org_fails_as_invalid(
    started: dict[str, WorkerProcess], prefix: str
) -> None:
    """``amount: -5`` for an org that does not exist fails once as invalid and is dead-lettered (not skipped)."""
    data = {
        "orgId": "org-nowhere",
        "contactId": "c-1",
        "amount": -5,
        "daysOverdue": 8,
        "paymentLink": "https://p.example/x",
    }

    [job_id] = await add_jobs(prefix, "dunning", [{"name": "process-dunning", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "dunning", job_id, ("completed", "failed"))

    assert (job["state"], job["attemptsMade"]) == ("failed", 1)
    assert job["failedReason"].endswith("invalid job: amount must be greater than 0")
    assert f"dunning.{job_id}" in await dead_letter_ids(prefix)
