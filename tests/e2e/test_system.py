"""The whole system under our supervisord.conf: Node enqueues every job type, effects land, shutdown is clean."""

from __future__ import annotations

import json
import pathlib
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.clinic import Clinic, run_sql, seed_clinic
from tests.support.fakeservers.providers import now_utc
from tests.support.supervised import (
    WORKER_PROGRAMS,
    Providers,
    enqueue,
    eventually,
    job_counts,
    js_date,
    stopped_cleanly,
    supervised,
    system_env,
)

pytestmark = pytest.mark.slow


def snapshot_count(dsn: str, org: str) -> int:
    found: list[int] = []

    async def work(db: asyncpg.Connection) -> None:
        found.append(await db.fetchval("select count(*) from daily_snapshots where org_id = $1", org))

    run_sql(dsn, work)
    return found[0]


def node_jobs(clinic: Clinic) -> dict[str, dict[str, Any]]:
    """One job of each type, per queue, as the Node CRM enqueues them (the README's data shapes)."""
    yesterday = (now_utc() - timedelta(days=1)).date().isoformat()
    jobs = {
        "reminders": {
            "name": "process-reminder",
            "data": {
                "orgId": clinic.org,
                "contactId": clinic.ada,
                "appointmentId": clinic.appointment,
                "message": "Hi Ada, see you at 3pm at E2E Dental!",
                "scheduledFor": js_date(clinic.starts_at),
                "reminderType": "3h",
            },
        },
        "nurture": {
            "name": "process-nurture",
            "data": {
                "orgId": clinic.org,
                "contactId": clinic.grace,
                "sequenceStep": 1,
                "template": "welcome",
                "personalization": {"first_name": "Grace", "offer": "10% off your first visit"},
            },
        },
        "dunning": {
            "name": "process-dunning",
            "data": {
                "orgId": clinic.org,
                "contactId": clinic.alan,
                "amount": 125.5,
                "daysOverdue": 8,
                "paymentLink": "https://pay.example.com/i/e2e",
            },
        },
        "snapshots": {"name": "process-snapshots", "data": {"orgId": clinic.org, "date": yesterday}},
    }
    return jobs


def test_node_jobs_of_every_type_take_effect_and_the_system_shuts_down_cleanly(
    tmp_path: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    """Node enqueues a reminder, a nurture step, a dunning notice and a snapshot; the fakes get the messages,
    Postgres the snapshot, and `supervisorctl shutdown` stops every program with exit status 0."""
    clinic = seed_clinic(database_url)
    with supervised(tmp_path, system_env(providers, database_url, prefix)) as system:
        system.wait_workers_running()
        system.wait_running("health", "fatal-alert")
        jobs = node_jobs(clinic)
        for queue, job in jobs.items():
            enqueue(prefix, queue, [job])

        eventually(lambda: len(providers.sms_to(clinic.ada_phone)) == 1, 60, "the reminder SMS at the fake Twilio")
        eventually(lambda: len(providers.mail_to(clinic.grace_email)) == 1, 60, "the nurture email at SendGrid")
        eventually(lambda: len(providers.mail_to(clinic.alan_email)) == 1, 60, "the dunning email at SendGrid")
        eventually(lambda: snapshot_count(database_url, clinic.org) == 1, 60, "the snapshot row in Postgres")
        eventually(
            lambda: all(job_counts(prefix, queue).get("completed") == 1 for queue in jobs), 30, "every job completed"
        )
        assert "see you at 3pm" in providers.sms_to(clinic.ada_phone)[0]["body"]
        assert "125.50" in json.dumps(providers.mail_to(clinic.alan_email)[0])

        status = system.shutdown()
        log = system.log("supervisord.log")
    assert status == 0
    for program in WORKER_PROGRAMS:
        assert stopped_cleanly(log, f"{program}-00"), f"{program}-00 did not exit with status 0"
    assert stopped_cleanly(log, "health")
