"""The outbox senders against a real Postgres migrated by the postgres adapter's runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from adapters.messaging.outbox import OutboxEmailSender, OutboxSmsSender
from adapters.postgres.pool import PostgresDatabase
from domain.messages import EmailMessage, SmsMessage
from domain.values import EmailAddress, PhoneNumber
from tests.support.builders import FAR_DEADLINE
from tests.support.fakes.clock import FakeClock
from tests.support.scratch import (
    CANARY_ADDRESS,
    CANARY_BODY,
    CANARY_PHONE,
    assert_no_canary,
    scratch_database,
)


@pytest.fixture
async def database() -> AsyncIterator[PostgresDatabase]:
    async with scratch_database() as found:
        yield found


async def test_the_runner_applies_the_outbox_migration(database: PostgresDatabase) -> None:
    """0100_outbox is recorded by the migration runner and its table exists."""
    assert await database.fetchval("select count(*) from schema_migrations where version = '0100_outbox'") == 1
    assert await database.fetchval("select to_regclass('outbox_messages') is not null")


async def test_sms_is_recorded_once_and_logged_redacted(database: PostgresDatabase, clock: FakeClock) -> None:
    """A send stores key, recipient and body, and logs the request, the answer (ledger key and receipt) and the
    record (ledger key and masked recipient): never the number or the text."""
    sender = OutboxSmsSender(database, clock)
    with capture_logs() as logs:
        receipt = await sender.send(
            SmsMessage("reminder:a1:24h:sms", PhoneNumber(CANARY_PHONE), CANARY_BODY), FAR_DEADLINE
        )

    row = await database.fetchrow("select * from outbox_messages")
    assert row is not None
    assert (row["ledger_key"], row["channel"], row["recipient"], row["body"]) == (
        "reminder:a1:24h:sms",
        "sms",
        CANARY_PHONE,
        CANARY_BODY,
    )
    assert row["created_at"] == clock.now()
    assert receipt.provider_message_id == f"outbox-sms-{row['id']}"
    assert [line["event"] for line in logs] == ["provider_request", "provider_answered", "outbox.sms_recorded"]
    assert logs[1]["provider_message_id"] == receipt.provider_message_id
    assert logs[2:] == [
        {
            "event": "outbox.sms_recorded",
            "log_level": "info",
            "ledger_key": "reminder:a1:24h:sms",
            "recipient": PhoneNumber(CANARY_PHONE).masked,
        }
    ]
    assert_no_canary(repr(logs))


async def test_duplicate_sends_of_one_key_store_one_row_and_share_the_receipt(
    database: PostgresDatabase, clock: FakeClock
) -> None:
    """Five concurrent sends under one ledger key leave one row and all return its receipt."""
    sender = OutboxSmsSender(database, clock)
    message = SmsMessage("reminder:a1:24h:sms", PhoneNumber(CANARY_PHONE), CANARY_BODY)

    receipts = await asyncio.gather(*(sender.send(message, FAR_DEADLINE) for _ in range(5)))

    assert len(set(receipts)) == 1
    assert await database.fetchval("select count(*) from outbox_messages") == 1


async def test_find_sent_reads_the_outbox(database: PostgresDatabase, clock: FakeClock) -> None:
    """find_sent returns the stored receipt when recorded at or after ``since``, else None."""
    sender = OutboxSmsSender(database, clock)
    receipt = await sender.send(SmsMessage("k1", PhoneNumber(CANARY_PHONE), CANARY_BODY), FAR_DEADLINE)

    assert await sender.find_sent("k1", clock.now()) == receipt
    assert await sender.find_sent("k1", clock.now() + timedelta(seconds=1)) is None
    assert await sender.find_sent("k2", clock.now()) is None


async def test_email_is_recorded_with_subject_and_both_bodies(database: PostgresDatabase, clock: FakeClock) -> None:
    """An email stores subject, text and html, and logs only the masked address."""
    sender = OutboxEmailSender(database, clock)
    message = EmailMessage("dunning:i1:email", EmailAddress(CANARY_ADDRESS), "Balance", CANARY_BODY, "<p>x</p>")
    with capture_logs() as logs:
        receipt = await sender.send(message, FAR_DEADLINE)

    row = await database.fetchrow("select * from outbox_messages")
    assert row is not None
    assert (row["channel"], row["recipient"], row["subject"], row["body"], row["html"]) == (
        "email",
        CANARY_ADDRESS,
        "Balance",
        CANARY_BODY,
        "<p>x</p>",
    )
    assert receipt.provider_message_id == f"outbox-email-{row['id']}"
    assert [entry["event"] for entry in logs] == ["provider_request", "provider_answered", "outbox.email_recorded"]
    assert_no_canary(repr(logs))
