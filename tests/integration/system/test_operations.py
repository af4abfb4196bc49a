"""What an operator meets: malformed jobs in the dead-letter queue, listed and replayed with the CLI; snapshot
backfills and on-demand scans through ``python -m entrypoints.cli``, against real worker processes."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.crm import create_appointment, create_contact, create_org, unique_phone
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import (
    Providers,
    WorkerProcess,
    add_jobs,
    js_date,
    node_jobs,
    run_cli,
    wait_for_state,
    workers,
)

pytestmark = pytest.mark.slow  # worker and CLI processes: 14-56 s a test measured on the shared machine

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
CANARY_PHONE = "+14155550199"
CANARY_TEXT = f"Hi Canary Patient, call us back on {CANARY_PHONE}"


@pytest.fixture(scope="module")
def reminders_worker(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[WorkerProcess]:
    with workers("reminders", env, log_dir) as [worker]:
        yield worker


async def dead_letters(prefix: str) -> list[dict[str, Any]]:
    """The copies in the ``dead-letter`` queue, read by npm bullmq."""
    found: list[dict[str, Any]] = (await node_jobs("list", prefix, "dead-letter", states=["waiting"]))["jobs"]
    return found


@pytest.mark.parametrize(
    ("name", "drop", "reason"),
    [
        ("process-reminder", "appointmentId", "appointmentId"),
        ("process-remindr", None, "job name"),
    ],
    ids=["missing-field", "unknown-name"],
)
async def test_a_malformed_node_job_fails_once_with_a_readable_reason_and_one_dead_letter_copy(
    reminders_worker: WorkerProcess, prefix: str, env: dict[str, str], name: str, drop: str | None, reason: str
) -> None:
    """A malformed job fails after one attempt, its reason names the problem without PII, and is dead-lettered once;
    the CLI lists the copy (without the job data) and replays it onto its source queue."""
    scheduled_for = js_date(now_utc() + timedelta(hours=2))
    data: dict[str, Any] = {
        "orgId": "org-1",
        "contactId": "contact-1",
        "appointmentId": "appt-1",
        "message": CANARY_TEXT,
        "scheduledFor": scheduled_for,
        "reminderType": "3h",
    }
    if drop is not None:
        del data[drop]

    [job_id] = await add_jobs(prefix, "reminders", [{"name": name, "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "reminders", job_id, ("completed", "failed"))

    assert job["state"] == "failed"
    assert job["attemptsMade"] == 1
    assert reason in job["failedReason"]
    assert job["failedReason"].startswith("invalid job")
    stored = job["failedReason"] + json.dumps(job["stacktrace"])
    assert CANARY_PHONE not in stored
    assert "Canary" not in stored
    copy_id = f"reminders.{job_id}"
    copies = [c for c in await dead_letters(prefix) if c["id"] == copy_id]
    assert len(copies) == 1
    assert copies[0]["name"] == name
    assert copies[0]["data"]["data"] == {**data, "scheduledFor": scheduled_for["$date"]}
    assert copies[0]["data"]["failedReason"] == job["failedReason"]
    assert (copies[0]["data"]["sourceQueue"], copies[0]["data"]["attemptsMade"]) == ("reminders", 1)

    code, out, err = await run_cli(env, "dead-letter", "list", "--json")
    assert code == 0, err
    [listed] = [entry for entry in json.loads(out)["jobs"] if entry["id"] == copy_id]
    assert (listed["jobName"], listed["jobId"], listed["failedReason"]) == (name, job_id, job["failedReason"])
    assert listed["owed"] is False  # invalid data: nothing can be sent, so nothing is owed
    assert CANARY_PHONE not in out + err

    code, out, err = await run_cli(env, "dead-letter", "replay", copy_id, "--json")
    assert code == 0, err
    [replayed] = json.loads(out)["jobs"]
    assert (replayed["queue"], replayed["added"]) == ("reminders", True)
    assert all(c["id"] != copy_id for c in await dead_letters(prefix))
    again = await wait_for_state(prefix, "reminders", replayed["jobId"], ("completed", "failed"))
    assert (again["name"], again["data"]) == (name, job["data"])
    assert again["failedReason"] == job["failedReason"]  # still malformed: it fails again, and is dead-lettered again
    [copy_of_replay] = [c for c in await dead_letters(prefix) if c["id"] == f"reminders.{replayed['jobId']}"]
    assert copy_of_replay["data"]["jobId"] == replayed["jobId"]


async def test_backfill_from_the_cli_recomputes_the_days_snapshots(env: dict[str, str], db: Any) -> None:
    """``cli backfill ORG FIRST LAST`` stores a snapshot for each day, overwriting a stale one with fresh counts."""
    org = await create_org(db)
    zone = ZoneInfo(org.zone)
    today = now_utc().astimezone(zone).date()
    first, last = today - timedelta(days=4), today - timedelta(days=2)

    def at(day: date, hour: int) -> datetime:
        return datetime.combine(day, time(hour), zone)

    contact = await create_contact(db, org, "Ada", phone=unique_phone(), created_at=at(first, 9))
    for offset, completed in ((0, 1), (1, 2), (2, 3)):
        for n in range(completed):
            await create_appointment(db, org, contact, at(first + timedelta(days=offset), 10 + n), status="completed")
    await db.execute(
        "insert into daily_snapshots (org_id, date, currency, appointments_booked, appointments_completed,"
        " appointments_cancelled, appointments_no_show, new_contacts, revenue_collected_minor, outstanding_minor,"
        " dunning_recovered_minor, messages, enrollments_started, enrollments_completed, computed_at)"
        " values ($1, $2, 'USD', 0, 99, 0, 0, 0, 0, 0, 0, '{}', 0, 0, $3)",
        org.id,
        first,
        now_utc() - timedelta(days=3),
    )

    code, out, err = await run_cli(env, "backfill", org.id, first.isoformat(), last.isoformat())

    assert code == 0, err
    assert json.loads(out)["snapshots_stored"] == 3
    rows = await db.fetch(
        "select date, appointments_completed, new_contacts from daily_snapshots where org_id = $1 order by date",
        org.id,
    )
    assert [(r["date"], r["appointments_completed"], r["new_contacts"]) for r in rows] == [
        (first, 1, 1),
        (first + timedelta(days=1), 2, 0),
        (last, 3, 0),
    ]


async def test_run_now_scan_queues_the_seeded_reminders_and_they_reach_twilio(
    reminders_worker: WorkerProcess, providers: Providers, prefix: str, env: dict[str, str], db: Any
) -> None:
    """``cli run-now scan-appointments`` queues a reminder per due appointment; the worker sends each as one SMS."""
    org = await create_org(db, name="Bright Smiles")
    soon_phone, tomorrow_phone, cancelled_phone = unique_phone(), unique_phone(), unique_phone()
    soon = await create_contact(db, org, "Ada", phone=soon_phone)
    tomorrow = await create_contact(db, org, "Bea", phone=tomorrow_phone)
    cancelled = await create_contact(db, org, "Cy", phone=cancelled_phone)
    await create_appointment(db, org, soon, now_utc() + timedelta(hours=2))
    await create_appointment(db, org, tomorrow, now_utc() + timedelta(hours=20), status="confirmed")
    await create_appointment(db, org, cancelled, now_utc() + timedelta(hours=2), status="cancelled")

    code, out, err = await run_cli(env, "run-now", "scan-appointments")

    assert code == 0, err
    scan_id = json.loads(out)["queued_job"]
    scan = await wait_for_state(prefix, "reminders", scan_id, ("completed", "failed"))
    assert scan["returnvalue"]["outcome"] == "published"
    assert scan["returnvalue"]["count"] >= 2
    for phone, first_name in ((soon_phone, "Ada"), (tomorrow_phone, "Bea")):
        for _ in range(100):
            if providers.sms_to(phone):
                break
            await asyncio.sleep(0.1)
        [sms] = providers.sms_to(phone)
        assert first_name in sms["body"]
        assert "Bright Smiles" in sms["body"]
    assert providers.sms_posts_to(cancelled_phone) == 0
    kinds = await db.fetch("select key from send_ledger where org_id = $1 and state = 'sent'", org.id)
    assert sorted(r["key"].split(":")[2] for r in kinds) == ["24h", "3h"]
