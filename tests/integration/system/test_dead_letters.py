"""The dead-letter procedure an operator follows: list and count why jobs failed, look at one (redacted), dry-run a
replay (nothing sent, queued or committed), replay for real (the ledger keeps what went out from going out twice),
purge old copies. Real dunning worker process, real npm bullmq producer, the CLI as a process."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from tests.support.crm import (
    Org,
    create_appointment,
    create_contact,
    create_org,
    reminder_start,
    unique_phone,
)
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import (
    Providers,
    WorkerProcess,
    add_jobs,
    run_cli,
    wait_for_state,
    workers,
)
from tests.support.queues import node

pytestmark = pytest.mark.slow  # worker and CLI processes: 10-43 s a test measured on the shared machine

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}


@pytest.fixture(scope="module")
def dunning_worker(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[WorkerProcess]:
    with workers("dunning", env, log_dir) as [worker]:
        yield worker


@pytest.fixture
async def dead_letter(prefix: str) -> AsyncIterator[BullmqDeadLetter]:
    client = redis_asyncio.Redis()
    try:
        yield BullmqDeadLetter(client, prefix)
    finally:
        await client.aclose()


async def owing_contact(db: Any, org: Org, name: str) -> tuple[str, str]:
    """A contact reachable by SMS only, with an invoice 8 days overdue; returns (contact id, phone)."""
    phone = unique_phone()
    contact = await create_contact(db, org, name, phone=phone)
    await db.execute(
        "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, due_at)"
        " values ($1, $2, $3, 12550, 'USD', 'open', $4, $5)",
        org.id,
        f"inv-{contact}",
        contact,
        now_utc() - timedelta(days=38),
        now_utc() - timedelta(days=8),
    )
    return contact, phone


def dunning_data(org: Org, contact: str, amount: float = 125.5) -> dict[str, Any]:
    link = f"https://pay.example.com/i/{org.tag}-{contact}"
    return {"orgId": org.id, "contactId": contact, "amount": amount, "daysOverdue": 8, "paymentLink": link}


def failed_copy(job_id: str, data: dict[str, Any], reason: str, finished_ago: timedelta = timedelta()) -> FailedJob:
    """The copy the runtime makes of a job that failed for good (here: a transient failure, attempts spent)."""
    finished = int((now_utc() - finished_ago).timestamp() * 1000)
    return FailedJob(
        "dunning", "process-dunning", job_id, data, reason, 3, 3, finished - 5000, finished - 10, finished, 0
    )


async def cli_json(env: dict[str, str], *args: str) -> Any:
    code, out, err = await run_cli(env, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_dry_run_reports_each_job_and_changes_nothing_then_the_replay_sends_only_what_is_owed(
    dunning_worker: WorkerProcess,
    providers: Providers,
    prefix: str,
    env: dict[str, str],
    db: Any,
    dead_letter: BullmqDeadLetter,
) -> None:
    """Three dead letters of one org: never sent (would send), already sent (would skip), an invalid amount from Node
    (would fail). The dry run says so and sends, queues and writes nothing; the real replay, recorded with who did
    it, sends the owed message once and the already-sent one not again."""
    org = await create_org(db, name="Oak Physio")
    owed, owed_phone = await owing_contact(db, org, "Ada")
    paid_up, paid_up_phone = await owing_contact(db, org, "Bea")
    [sent_id] = await add_jobs(prefix, "dunning", [{"name": "process-dunning", "data": dunning_data(org, paid_up)}])
    assert (await wait_for_state(prefix, "dunning", sent_id, ("completed", "failed")))["state"] == "completed"
    assert len(providers.sms_to(paid_up_phone)) == 1
    await dead_letter.record(failed_copy("crashed-1", dunning_data(org, owed), "TransientError: database unreachable"))
    await dead_letter.record(
        failed_copy("crashed-2", dunning_data(org, paid_up), "TransientError: database unreachable")
    )
    [bad_id] = await add_jobs(
        prefix, "dunning", [{"name": "process-dunning", "data": dunning_data(org, owed, amount=-12), "opts": RETRY}]
    )
    bad = await wait_for_state(prefix, "dunning", bad_id, ("completed", "failed"))
    assert bad["attemptsMade"] == 1
    assert bad["failedReason"].startswith("InvalidJob: invalid job: amount")
    ledger_before = await db.fetch("select key, state, updated_at from send_ledger order by key")
    counts_before = (await node("counts", prefix, "dunning"))["counts"]
    twilio_before = len(providers.twilio.requests)

    dry = await cli_json(env, "dead-letter", "replay", "--org", org.id, "--dry-run")

    verdicts = {job["id"]: job["verdict"] for job in dry["jobs"]}
    assert verdicts["dunning.crashed-1"].startswith("would send: sms to +15")
    assert owed_phone not in json.dumps(dry)
    assert verdicts["dunning.crashed-2"] == "would skip: already sent"
    assert verdicts[f"dunning.{bad_id}"].startswith("would fail: invalid job: amount")
    assert len(providers.twilio.requests) == twilio_before
    assert await db.fetch("select key, state, updated_at from send_ledger order by key") == ledger_before
    assert (await node("counts", prefix, "dunning"))["counts"] == counts_before
    listed = await cli_json(env, "dead-letter", "list", "--org", org.id)
    assert listed["total"] == 3

    replayed = await cli_json(env, "dead-letter", "replay", "--org", org.id, "--reason", "transient", "--by", "alice")

    assert {job["id"] for job in replayed["jobs"]} == {"dunning.crashed-1", "dunning.crashed-2"}
    for job in replayed["jobs"]:
        done = await wait_for_state(prefix, "dunning", job["jobId"], ("completed", "failed"))
        assert done["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert len(providers.sms_to(owed_phone)) == 1
    assert len(providers.sms_to(paid_up_phone)) == 1  # the ledger held it: not sent twice
    left = await cli_json(env, "dead-letter", "list", "--org", org.id)
    assert [job["id"] for job in left["jobs"]] == [f"dunning.{bad_id}"]
    code, _out, err = await run_cli(env, "dead-letter", "show", "dunning.crashed-1")
    assert code == 1
    assert "replayed by alice" in err


async def test_list_filters_and_counts_by_reason_and_show_redacts_the_data_unless_asked(
    prefix: str, env: dict[str, str], dead_letter: BullmqDeadLetter
) -> None:
    """``list`` counts every match per queue and reason kind and shows no job data; ``show --data`` masks the
    payment link and the phone in the data, ``--unredacted`` shows them."""
    org_id = f"org-list-{time.time_ns()}"
    data = {
        "orgId": org_id,
        "contactId": "c1",
        "amount": 10,
        "daysOverdue": 3,
        "paymentLink": "https://pay.example.com/x?t=s3cret",
    }
    await dead_letter.record(failed_copy("list-1", data, "InvalidJob: invalid job: amount must be above zero"))
    await dead_letter.record(failed_copy("list-2", data, "DeliveryRejected: invalid number (provider code 21211)"))
    await dead_letter.record(failed_copy("list-3", data, "job stalled more than allowable limit"))

    listed = await cli_json(env, "dead-letter", "list", "--org", org_id)
    only_invalid = await cli_json(env, "dead-letter", "list", "--org", org_id, "--reason", "invalid_job")
    redacted = await cli_json(env, "dead-letter", "show", "dunning.list-1", "--data")
    clear = await cli_json(env, "dead-letter", "show", "dunning.list-1", "--data", "--unredacted")

    assert listed["total"] == 3
    assert listed["counts"]["dunning"] == {"invalid_job": 1, "delivery_rejected": 1, "stalled": 1}
    assert "s3cret" not in json.dumps(listed)
    assert all("data" not in job for job in listed["jobs"])
    assert [job["id"] for job in only_invalid["jobs"]] == ["dunning.list-1"]
    assert redacted["dataRedacted"] is True
    assert redacted["data"]["paymentLink"] == "[REDACTED]"
    assert redacted["attemptsMade"] == 3
    assert redacted["reasonKind"] == "invalid_job"
    assert clear["data"]["paymentLink"] == data["paymentLink"]


async def test_purge_removes_only_dead_letters_beyond_the_retention(
    prefix: str, env: dict[str, str], dead_letter: BullmqDeadLetter
) -> None:
    """``purge`` (default DEAD_LETTER_RETENTION_DAYS, 30) removes copies that failed 40 days ago and keeps one of
    yesterday; ``--dry-run`` only counts them."""
    org_id = f"org-purge-{time.time_ns()}"
    data = {"orgId": org_id, "contactId": "c1", "amount": 10, "daysOverdue": 3, "paymentLink": "https://p.example.com"}
    await dead_letter.record(failed_copy("purge-old", data, "TransientError: x", finished_ago=timedelta(days=40)))
    await dead_letter.record(failed_copy("purge-new", data, "TransientError: x", finished_ago=timedelta(days=1)))

    counted = await cli_json(env, "dead-letter", "purge", "--dry-run")
    purged = await cli_json(env, "dead-letter", "purge")

    assert counted["removed"] == 0
    assert counted["matching"] >= 1
    assert purged["removed"] == counted["matching"]
    remaining = await cli_json(env, "dead-letter", "list", "--org", org_id)
    assert [job["id"] for job in remaining["jobs"]] == ["dunning.purge-new"]


async def test_queue_commands_refuse_a_queue_we_do_not_consume(env: dict[str, str]) -> None:
    """``queue pause dead-letter`` (or any name not ours) exits 2 naming the queues we consume; counts answer."""
    code, _out, err = await run_cli(env, "queue", "pause", "dead-letter")
    counted = await run_cli(env, "queue", "counts", "dunning")

    assert code == 2
    assert "invalid choice: 'dead-letter'" in err
    assert "reminders" in err
    assert counted[0] == 0, counted[2]
    assert json.loads(counted[1])["dunning"]["paused"] is False


async def test_the_dry_run_re_validates_against_the_crm_as_it_is_now(
    prefix: str, env: dict[str, str], db: Any, dead_letter: BullmqDeadLetter
) -> None:
    """A reminder dead-lettered while its appointment stood is skipped by the dry run once the appointment is
    cancelled, as the worker would skip it now."""
    org = await create_org(db)
    contact = await create_contact(db, org, "Cy", phone=unique_phone())
    start = reminder_start()
    appointment = await create_appointment(db, org, contact, start, status="cancelled")
    data = {
        "orgId": org.id,
        "contactId": contact,
        "appointmentId": appointment,
        "message": "Reminder",
        "scheduledFor": start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "reminderType": "3h",
    }
    copy = failed_copy("cancelled-1", data, "TransientError: database unreachable")
    await dead_letter.record(attrs.evolve(copy, source_queue="reminders", job_name="process-reminder"))

    dry = await cli_json(env, "dead-letter", "replay", "reminders.cancelled-1", "--dry-run")

    [job] = dry["jobs"]
    assert job["verdict"] == "would skip: appointment_cancelled"
