"""Delivery webhooks in the whole system under our supervisord.conf: a STOP reply stops the next reminder, and a
signed SendGrid event settles an email whose outcome was unknown."""

from __future__ import annotations

import json
import pathlib
import urllib.parse
import urllib.request
from typing import Any

import asyncpg
import pytest

from tests.support.clinic import run_sql, seed_clinic
from tests.support.fakeservers.providers import now_utc
from tests.support.fakeservers.webhook_signing import twilio_headers
from tests.support.supervised import (
    SENDGRID_WEBHOOK_KEYS,
    TWILIO_FROM,
    WEBHOOKS_PUBLIC_URL,
    Providers,
    enqueue,
    eventually,
    js_date,
    node,
    stopped_cleanly,
    supervised,
    system_env,
)

pytestmark = pytest.mark.slow


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310  # loopback
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return answer.status, answer.read().decode()


def reminder_outcome(prefix: str, job_id: str) -> Any:
    [job] = node("inspect", prefix, "reminders", ids=[job_id])["jobs"]
    return job["returnvalue"] if job and job["state"] == "completed" else None


def ledger_state(dsn: str, key: str) -> str | None:
    found: list[str | None] = []

    async def work(db: asyncpg.Connection) -> None:
        found.append(
            await db.fetchval(
                "select state || '/' || coalesce(delivery_status, '-') from send_ledger where key = $1", key
            )
        )

    run_sql(dsn, work)
    return found[0]


def test_a_stop_reply_skips_the_next_reminder_and_a_delivered_event_settles_an_unknown_email(
    tmp_path: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    """Ada texts "Stop" (signed as Twilio signs it): her reminder completes skipped for consent and the fake Twilio
    gets no SMS. An email left UNKNOWN (as a timed-out send leaves it) becomes SENT/delivered by SendGrid's signed
    delivered event. The webhooks program stops with exit status 0."""
    clinic = seed_clinic(database_url)
    env = system_env(providers, database_url, prefix)
    base = f"http://127.0.0.1:{env['WEBHOOKS_PORT']}"
    with supervised(tmp_path, env) as system:
        system.wait_workers_running()
        system.wait_running("webhooks")
        eventually(lambda: "webhooks_listening" in system.log("webhooks.log"), 30, "the webhooks server listening")

        path = "/webhooks/twilio/inbound"
        form = {"MessageSid": "SMe2e0001", "From": clinic.ada_phone, "To": TWILIO_FROM, "Body": " Stop "}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **twilio_headers(path, form, providers.twilio.auth_token, WEBHOOKS_PUBLIC_URL),
        }
        body = urllib.parse.urlencode(form).encode()
        assert post(base + path, body, headers) == (200, '<?xml version="1.0" encoding="UTF-8"?><Response />')

        [job_id] = enqueue(
            prefix,
            "reminders",
            [
                {
                    "name": "process-reminder",
                    "data": {
                        "orgId": clinic.org,
                        "contactId": clinic.ada,
                        "appointmentId": clinic.appointment,
                        "message": "Hi Ada, see you at 3pm at E2E Dental!",
                        "scheduledFor": js_date(clinic.starts_at),
                        "reminderType": "3h",
                    },
                }
            ],
        )
        eventually(lambda: reminder_outcome(prefix, job_id) is not None, 60, "the reminder job completed")
        assert reminder_outcome(prefix, job_id) == {"outcome": "skipped", "reason": "consent"}
        assert providers.sms_to(clinic.ada_phone) == []

        key = f"dunning:{clinic.alan}:e2e:email"

        async def unknown_email(db: asyncpg.Connection) -> None:
            await db.execute(
                "insert into send_ledger (key, org_id, contact_id, channel, purpose, state, claimed_at, updated_at,"
                " reason) values ($1, $2, $3, 'email', 'transactional', 'unknown', $4, $4, 'timeout')",
                key,
                clinic.org,
                clinic.alan,
                now_utc(),
            )

        run_sql(database_url, unknown_email)
        event = {"email": clinic.alan_email, "event": "delivered", "sg_event_id": "e2e-ev-1", "ledger_key": key,
                 "sg_message_id": "e2emsg.filter0001", "timestamp": int(now_utc().timestamp())}  # fmt: skip
        events = json.dumps([event]).encode()
        headers = {"Content-Type": "application/json", **SENDGRID_WEBHOOK_KEYS.headers(events)}
        assert post(base + "/webhooks/sendgrid/events", events, headers)[0] == 204
        assert ledger_state(database_url, key) == "sent/delivered"

        status = system.shutdown()
        log = system.log("supervisord.log")
    assert status == 0
    assert stopped_cleanly(log, "webhooks")
    assert clinic.ada_phone not in system.log("webhooks.log")
