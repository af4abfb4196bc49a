"""A message still owed is visible, not parked: dead-lettered reminders whose send never settled, and ledger entries
left CLAIMED/UNKNOWN long past the settle period, counted by the health probe and exposed in /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from adapters.health.probe import HealthProbe
from adapters.observability.metrics import render_prometheus
from adapters.postgres import PostgresDatabase, PostgresSendLedger
from domain.messages import SendClaim
from domain.values import Channel, ContactId, MessagePurpose, OrgId, PhoneNumber
from tests.support.scratch import redis_prefix, scratch_dsn

STARTS = "2026-03-02T15:00:00.000Z"
KEY = "reminder:a-1:24h:20260302T150000Z:sms"


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with scratch_dsn() as found:
        yield found


@pytest.fixture
async def shared() -> AsyncIterator[tuple[Redis, str]]:
    async with redis_prefix() as found:
        yield found


def _reminder_failure(job_id: str, appointment: str, reason: str) -> FailedJob:
    data = {
        "orgId": "org-1",
        "contactId": "c-1",
        "appointmentId": appointment,
        "message": "Reminder",
        "scheduledFor": STARTS,
        "reminderType": "24h",
    }
    return FailedJob("reminders", "process-reminder", job_id, data, reason, 1, 3, 0, None, None, 2)


async def test_dead_lettered_reminders_whose_send_never_settled_are_counted_as_owed(
    dsn: str, shared: tuple[Redis, str]
) -> None:
    """A reminder failed by stalls with its entry CLAIMED is owed; one whose entry is SENT, one refused by the
    provider and one with invalid data are not; settling the entry removes it from the count."""
    client, prefix = shared
    dead_letter = BullmqDeadLetter(client, prefix)
    await dead_letter.record(_reminder_failure("1", "a-1", "job stalled more than allowable limit"))
    await dead_letter.record(_reminder_failure("2", "a-2", "job stalled more than allowable limit"))
    await dead_letter.record(_reminder_failure("3", "a-3", "DeliveryRejected: invalid recipient number"))
    await dead_letter.record(
        FailedJob("reminders", "process-reminder", "4", {"orgId": 5}, "invalid job: orgId x", 1, 1, 0, None, None, 0)
    )
    database = await PostgresDatabase.connect(dsn, max_size=2)
    try:
        ledger = PostgresSendLedger(database)
        claim = SendClaim(
            KEY,
            OrgId("org-1"),
            ContactId("c-1"),
            Channel.SMS,
            MessagePurpose.TRANSACTIONAL,
            PhoneNumber("+14155550100"),
        )
        claimed = await ledger.claim(claim, datetime.now(UTC) - timedelta(hours=1))
        sent_key = KEY.replace("a-1", "a-2")
        other = await ledger.claim(
            SendClaim(sent_key, claim.org_id, claim.contact_id, Channel.SMS, claim.purpose, claim.recipient),
            datetime.now(UTC),
        )
        assert other.entry is not None
        await ledger.mark_sent(sent_key, other.entry.version, "SM2", datetime.now(UTC))
        probe = HealthProbe(client, dsn, prefix, ["reminders"], ["reminders"], owed_after=timedelta(minutes=15))

        report = await probe.owed()
        assert report is not None
        assert report.dead_letter_owed == 1
        assert dict(report.stuck_ledger) == {"claimed": 1, "unknown": 0}

        assert claimed.entry is not None
        await ledger.mark_sent(KEY, claimed.entry.version, "SM1", datetime.now(UTC))
        settled = await probe.owed()
        assert settled is not None
        assert (settled.dead_letter_owed, dict(settled.stuck_ledger)) == (0, {"claimed": 0, "unknown": 0})
    finally:
        await database.close()


async def test_metrics_expose_owed_dead_letters_and_stuck_ledger_entries(dsn: str, shared: tuple[Redis, str]) -> None:
    """/metrics carries clientflow_dead_letter_owed_jobs and clientflow_send_ledger_stuck_entries{state}."""
    client, prefix = shared
    await BullmqDeadLetter(client, prefix).record(
        _reminder_failure("1", "a-1", "job stalled more than allowable limit")
    )
    probe = HealthProbe(client, dsn, prefix, ["reminders"], ["reminders"])
    text = render_prometheus(await probe.snapshot()).decode()
    samples = {
        (sample.name, sample.labels.get("state", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("clientflow_dead_letter_owed_jobs", "")] == 1
    assert samples[("clientflow_send_ledger_stuck_entries", "claimed")] == 0
