"""The canary run: real worker processes (``python -m entrypoints.worker``, the real bootstrap) for the reminders,
nurture and dunning queues, against a throwaway database whose contacts carry canary PII, fake Twilio and SendGrid
servers (the API key and auth token are canaries too), a fake Sentry and a fake OTLP collector. Jobs carry canary
PII as the Node CRM sends it, some fail for good. None of the canaries may appear in the processes' output, a Sentry
envelope, an exported span, or a job's failure reason in Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters.bullmq.heartbeat import live_workers
from adapters.clock import SystemClock
from adapters.postgres.pool import PostgresDatabase
from entrypoints import demo
from tests.support.canaries import API_KEY, AUTH_TOKEN, EMAIL, FIRST_NAME, PAYMENT_LINK, PHONE, leaked
from tests.support.fakeservers.otlp import FakeOtlpCollector
from tests.support.fakeservers.scripted import ScriptedServer
from tests.support.fakeservers.sendgrid import FakeSendGrid
from tests.support.fakeservers.sentry import FakeSentry
from tests.support.fakeservers.twilio import FakeTwilio, twilio_error
from tests.support.postgres import fresh_database
from tests.support.queues import ROOT, add, eventually, state_of

pytestmark = pytest.mark.slow  # real workers over every job type: ~35 s measured on the shared machine

QUEUES = ("reminders", "nurture", "dunning")
CANARY_TEXT = f"Hi {FIRST_NAME}, call {PHONE}, write to {EMAIL} or pay at {PAYMENT_LINK}"


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeTwilio, FakeSendGrid, FakeSentry, FakeOtlpCollector]]:
    twilio = FakeTwilio(auth_token=AUTH_TOKEN, now=SystemClock().now)
    sendgrid = FakeSendGrid(api_key=API_KEY)
    sentry, collector = FakeSentry(), FakeOtlpCollector()
    started: list[ScriptedServer] = []
    try:
        for server in (twilio, sendgrid, sentry, collector):
            await server.start()
            started.append(server)
        yield twilio, sendgrid, sentry, collector
    finally:
        for server in started:
            await server.close()


async def _seed_canaries(dsn: str) -> None:
    """The demo's organization and data, its contacts given the canary name, phone and address."""
    database = await PostgresDatabase.connect(dsn)
    try:
        await demo.seed(database, SystemClock().now())
        await database.execute(
            "update contacts set first_name = $1, phone = case when phone is null then null else $2 end,"
            " email = case when email is null then null else $3 end where org_id = $4",
            FIRST_NAME,
            PHONE,
            EMAIL,
            demo.ORG,
        )
    finally:
        await database.close()


def _start_worker(queue: str, env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "entrypoints.worker", "--queue", queue],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def _finished(prefix: str, queue: str, job_id: str) -> bool:
    return await state_of(prefix, queue, job_id) in ("completed", "failed")


async def _failure_texts(client: Redis, prefix: str) -> list[str]:
    """Every failure reason and stored stack trace of the run's jobs, and the dead-letter copies' reasons."""
    texts: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}:*"):
        if await client.type(key) != "hash":
            continue
        reason, stacktrace, data = await client.hmget(key, ["failedReason", "stacktrace", "data"])
        texts += [text for text in (reason, stacktrace) if text]
        if key.startswith(f"{prefix}:dead-letter:") and data:
            texts.append(str(json.loads(data).get("failedReason")))
    return texts


async def test_no_canary_leaves_the_workers(
    servers: tuple[FakeTwilio, FakeSendGrid, FakeSentry, FakeOtlpCollector],
    redis_prefix: tuple[Redis, str],
    tmp_path: Path,
) -> None:
    """Reminder, nurture and dunning jobs with canary PII, three of them failing (malformed data, a service's
    invalid job, a provider error quoting the number), leave no canary in logs, envelopes, spans or Redis reasons."""
    twilio, sendgrid, sentry, collector = servers
    _, prefix = redis_prefix
    client = Redis(decode_responses=True)
    async with fresh_database("canary") as dsn:
        await _seed_canaries(dsn)
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "VIRTUAL_ENV")},
            "NODE_ENV": "production",
            "LOG_LEVEL": "debug",
            "DATABASE_URL": dsn,
            "BULLMQ_PREFIX": prefix,
            "SENTRY_DSN": sentry.dsn,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url,
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": "+15005550006",
            "TWILIO_BASE_URL": twilio.base_url,
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_FROM_EMAIL": "reminders@clinic.example",
            "SENDGRID_HOST": sendgrid.base_url,
            "WORKER_CONCURRENCY": "4",
        }
        outputs = {queue: tmp_path / f"{queue}.log" for queue in QUEUES}
        workers = {queue: _start_worker(queue, env, outputs[queue]) for queue in QUEUES}
        try:
            await eventually(lambda: _all_heartbeating(client, prefix), within=30)
            twilio.script(twilio_error(400, 21211, f"The 'To' number {PHONE} is not a valid phone number."))
            failing = [
                ("reminders", await _add_reminder(prefix, scheduled_for="whenever", phone=PHONE, email=EMAIL)),
                ("reminders", await _add_reminder(prefix)),
                ("dunning", await _add_dunning(prefix, days_overdue=0)),
            ]
            for queue, job_id in failing:
                await eventually(lambda q=queue, i=job_id: _finished(prefix, q, i), within=30)
            succeeding = [
                ("nurture", await _add_nurture(prefix)),
                ("dunning", await _add_dunning(prefix, days_overdue=8)),
            ]
            for queue, job_id in succeeding:
                await eventually(lambda q=queue, i=job_id: _finished(prefix, q, i), within=30)
            states = [await state_of(prefix, queue, job_id) for queue, job_id in failing + succeeding]
            reasons = await _failure_texts(client, prefix)
        finally:
            for process in workers.values():
                process.send_signal(signal.SIGTERM)
            codes = {queue: await asyncio.to_thread(p.wait, 30) for queue, p in workers.items()}
    try:
        output = {queue: path.read_text() for queue, path in outputs.items()}
        assert codes == dict.fromkeys(QUEUES, 0), output
        assert states[0] == "failed"  # malformed: scheduledFor is no date
        assert states[2] == "failed"  # the dunning service refuses daysOverdue 0
        assert twilio.requests  # the provider paths ran: a rejection quoting the number, then real sends
        assert twilio.messages or sendgrid.accepted
        assert len(sentry.events()) >= 2
        assert {"queue", "job_name", "attempt", "org_id"} <= set(sentry.events()[0]["tags"])
        assert reasons
        span_names = {span.name for _, span in collector.spans()}
        assert {"process reminders", "process dunning", "twilio send"} <= span_names
        lines = [json.loads(line) for text in output.values() for line in text.splitlines() if line.startswith("{")]
        assert any(line.get("event") == "job_failed" and line.get("org_id") == demo.ORG for line in lines)

        assert {queue: leaked(text) for queue, text in output.items()} == {queue: [] for queue in QUEUES}
        assert [leaked(body) for body in sentry.raw_bodies if leaked(body)] == []
        assert [leaked(str(export)) for export in collector.exports if leaked(str(export))] == []
        assert [leaked(reason) for reason in reasons if leaked(reason)] == []
    finally:
        await client.aclose()


async def _all_heartbeating(client: Redis, prefix: str) -> bool:
    return all([len(await live_workers(client, prefix, queue)) == 1 for queue in QUEUES])


async def _add_reminder(prefix: str, scheduled_for: str | None = None, **extra: Any) -> str:
    now = SystemClock().now()
    data = {
        "orgId": demo.ORG,
        "contactId": demo.ADA,
        "appointmentId": "demo-appt-3h",
        "message": CANARY_TEXT,
        "scheduledFor": scheduled_for or {"$date": now.isoformat(timespec="milliseconds").replace("+00:00", "Z")},
        "reminderType": "3h",
        **extra,
    }
    return await add(prefix, "reminders", "process-reminder", data, attempts=2)


async def _add_nurture(prefix: str) -> str:
    personalization = {"first_name": FIRST_NAME, "org_name": "Demo Dental", "offer": f"pay at {PAYMENT_LINK}"}
    data = {"orgId": demo.ORG, "contactId": demo.GRACE, "sequenceStep": 1, "template": "welcome"}
    return await add(prefix, "nurture", "process-nurture", {**data, "personalization": personalization}, attempts=2)


async def _add_dunning(prefix: str, days_overdue: int) -> str:
    data = {
        "orgId": demo.ORG,
        "contactId": demo.ALAN,
        "amount": 125.5,
        "daysOverdue": days_overdue,
        "paymentLink": PAYMENT_LINK,
    }
    return await add(prefix, "dunning", "process-dunning", data, attempts=2)
