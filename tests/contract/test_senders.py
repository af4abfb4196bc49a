"""The sender ports' contract, run on the in-memory fakes and on every real adapter (against local fake providers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest

from adapters.messaging.outbox import OutboxEmailSender, OutboxSmsSender
from adapters.messaging.sendgrid_email import SendGridEmailSender
from adapters.messaging.twilio_sms import TwilioSmsSender
from adapters.postgres.pool import PostgresDatabase
from domain.errors import ClaimLapsed
from domain.messages import EmailMessage, SmsMessage
from domain.ports import EmailSender, SmsSender
from domain.values import EmailAddress, PhoneNumber
from tests.support.builders import FAR_DEADLINE
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.senders import FakeEmailSender, FakeSmsSender
from tests.support.fakeservers.sendgrid import FakeSendGrid
from tests.support.fakeservers.twilio import FakeTwilio
from tests.support.postgres import emptied_database
from tests.support.scratch import redis_prefix, running


@pytest.fixture
def sender_clock() -> FakeClock:
    return FakeClock()


Requests = Callable[[], Awaitable[int]]
"""How many requests (sends) reached the implementation's provider so far."""


@pytest.fixture(params=["fake", "twilio", "outbox"])
async def sms_world(
    request: pytest.FixtureRequest, sender_clock: FakeClock, contract_database: str
) -> AsyncIterator[tuple[SmsSender, Requests]]:
    """Each SmsSender implementation (the outbox on the contract database, emptied), all reading the same stopped
    clock, with its provider's request count."""
    if request.param == "fake":
        fake_sender = FakeSmsSender(clock=sender_clock)
        yield fake_sender, _counting(lambda: len(fake_sender.sent))
    elif request.param == "twilio":
        async with running(FakeTwilio(now=sender_clock.now)) as fake, redis_prefix() as (client, prefix):
            sender = TwilioSmsSender(
                account_sid=fake.account_sid,
                auth_token=fake.auth_token,
                sender="+15005550006",
                redis=client,
                clock=sender_clock,
                base_url=fake.base_url,
                record_prefix=prefix,
            )
            yield sender, _counting(lambda: sum(r.method == "POST" for r in fake.requests))
            await sender.close()
    else:
        async with emptied_database(contract_database, max_size=2) as database:
            yield OutboxSmsSender(database, sender_clock), _outbox_rows(database)


@pytest.fixture
def sms_sender(sms_world: tuple[SmsSender, Requests]) -> SmsSender:
    return sms_world[0]


@pytest.fixture(params=["fake", "sendgrid", "outbox"])
async def email_world(
    request: pytest.FixtureRequest, sender_clock: FakeClock, contract_database: str
) -> AsyncIterator[tuple[EmailSender, Requests]]:
    """Each EmailSender implementation (the outbox on the contract database, emptied), with its provider's
    request count."""
    if request.param == "fake":
        fake_sender = FakeEmailSender(sender_clock)
        yield fake_sender, _counting(lambda: len(fake_sender.sent))
    elif request.param == "sendgrid":
        async with running(FakeSendGrid()) as fake:
            sender = SendGridEmailSender(
                fake.api_key, EmailAddress("sender@clinic.example.com"), sender_clock, host=fake.base_url
            )
            yield sender, _counting(lambda: len(fake.requests))
    else:
        async with emptied_database(contract_database, max_size=2) as database:
            yield OutboxEmailSender(database, sender_clock), _outbox_rows(database)


@pytest.fixture
def email_sender(email_world: tuple[EmailSender, Requests]) -> EmailSender:
    return email_world[0]


def _counting(count: Callable[[], int]) -> Requests:
    async def requests() -> int:
        return count()

    return requests


def _outbox_rows(database: PostgresDatabase) -> Requests:
    async def requests() -> int:
        rows: int = await database.fetchval("select count(*) from outbox_messages")
        return rows

    return requests


def sms(key: str, number: str = "+14155550100", body: str = "See you tomorrow at 10:00") -> SmsMessage:
    return SmsMessage(key, PhoneNumber(number), body)


def email(key: str) -> EmailMessage:
    return EmailMessage(key, EmailAddress("patient@example.org"), "Reminder", "See you tomorrow", "<p>See you</p>")


async def test_sms_send_returns_a_distinct_provider_id_per_message(sms_sender: SmsSender) -> None:
    """Each accepted message gets its own non-empty provider id."""
    first = await sms_sender.send(sms("k1"), FAR_DEADLINE)
    second = await sms_sender.send(sms("k2", body="Another"), FAR_DEADLINE)
    assert first.provider_message_id
    assert second.provider_message_id
    assert first != second


async def test_find_sent_returns_the_receipt_of_a_message_sent_since(
    sms_sender: SmsSender, sender_clock: FakeClock
) -> None:
    """Reconciliation finds a message sent under the key at or after ``since``."""
    since = sender_clock.now()
    receipt = await sms_sender.send(sms("k1"), FAR_DEADLINE)
    assert await sms_sender.find_sent("k1", since) == receipt


async def test_find_sent_is_none_for_a_key_never_sent(sms_sender: SmsSender, sender_clock: FakeClock) -> None:
    """A key never sent is not found, even when other messages to the same number were."""
    await sms_sender.send(sms("k1"), FAR_DEADLINE)
    assert await sms_sender.find_sent("k2", sender_clock.now() - timedelta(days=1)) is None


async def test_find_sent_is_none_for_a_message_sent_before_since(
    sms_sender: SmsSender, sender_clock: FakeClock
) -> None:
    """A message sent before ``since`` is not the one reconciled."""
    await sms_sender.send(sms("k1"), FAR_DEADLINE)
    sender_clock.advance(timedelta(minutes=5))
    assert await sms_sender.find_sent("k1", sender_clock.now()) is None


async def test_email_send_returns_a_distinct_provider_id_per_message(email_sender: EmailSender) -> None:
    """Each accepted email gets its own non-empty provider id."""
    first = await email_sender.send(email("k1"), FAR_DEADLINE)
    second = await email_sender.send(email("k2"), FAR_DEADLINE)
    assert first.provider_message_id
    assert second.provider_message_id
    assert first != second


async def test_sms_past_the_claims_deadline_is_refused_and_nothing_is_sent(
    sms_world: tuple[SmsSender, Requests], sender_clock: FakeClock
) -> None:
    """A deadline already passed: ClaimLapsed, and no request reaches the provider."""
    sender, requests = sms_world
    with pytest.raises(ClaimLapsed):
        await sender.send(sms("k1"), sender_clock.now() - timedelta(seconds=1))
    assert await requests() == 0
    assert await sender.find_sent("k1", sender_clock.now() - timedelta(days=1)) is None


async def test_email_past_the_claims_deadline_is_refused_and_nothing_is_sent(
    email_world: tuple[EmailSender, Requests], sender_clock: FakeClock
) -> None:
    """A deadline already passed: ClaimLapsed, and no request reaches the provider."""
    sender, requests = email_world
    with pytest.raises(ClaimLapsed):
        await sender.send(email("k1"), sender_clock.now() - timedelta(seconds=1))
    assert await requests() == 0
