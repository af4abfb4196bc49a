"""Exactly once end to end: the Dispatcher with the Postgres ledger and the real provider adapters vs the fakes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
from redis.asyncio import Redis

from adapters.clock import SystemClock
from adapters.messaging.sendgrid_email import SendGridEmailSender
from adapters.messaging.twilio_sms import TwilioSmsSender
from adapters.postgres import PostgresDatabase, PostgresSendLedger
from domain.delivery import Delivered, Dispatcher, Suppressed
from domain.errors import SuppressionReason
from domain.messages import EmailMessage, LedgerState, SendClaim
from domain.outcomes import Deferred, Undeliverable
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId
from tests.integration.messaging.exactly_once_world import CLAIM, KEY, MESSAGE
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.senders import FakeEmailSender, FakeSmsSender
from tests.support.fakeservers.scripted import Stall
from tests.support.fakeservers.sendgrid import FakeSendGrid
from tests.support.fakeservers.twilio import FakeTwilio, twilio_error
from tests.support.scratch import (
    CANARY_ADDRESS,
    CANARY_BODY,
    CANARY_PHONE,
    assert_no_canary,
    running,
    scratch_dsn,
)

ROOT = Path(__file__).resolve().parents[3]
SETTLE = timedelta(seconds=60)


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with scratch_dsn() as found:
        yield found


@pytest.fixture
async def database(dsn: str) -> AsyncIterator[PostgresDatabase]:
    found = await PostgresDatabase.connect(dsn, max_size=4)
    yield found
    await found.close()


@pytest.fixture
async def live_twilio() -> AsyncIterator[FakeTwilio]:
    """A fake Twilio on the real clock, as the child process (which uses the system clock) needs."""
    async with running(FakeTwilio(now=SystemClock().now)) as server:
        yield server


def twilio_sender(fake: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock | SystemClock) -> TwilioSmsSender:
    client, prefix = redis
    return TwilioSmsSender(
        account_sid=fake.account_sid,
        auth_token=fake.auth_token,
        sender="+15005550006",
        redis=client,
        clock=clock,
        base_url=fake.base_url,
        record_prefix=f"{prefix}:twilio",
    )


def posts(fake: FakeTwilio | FakeSendGrid) -> int:
    return sum(1 for request in fake.requests if request.method == "POST")


async def test_five_concurrent_duplicate_sms_jobs_make_one_twilio_request(
    dsn: str, database: PostgresDatabase, live_twilio: FakeTwilio, redis: tuple[Redis, str]
) -> None:
    """Five workers (own pools, own senders) delivering the same reminder at once make exactly one provider request."""
    clock = SystemClock()
    pools = [await PostgresDatabase.connect(dsn, max_size=2) for _ in range(5)]
    senders = [twilio_sender(live_twilio, redis, clock) for _ in range(5)]
    live_twilio.script(Stall(0.3))  # the winner is still mid-send while the others claim
    try:
        results = await asyncio.gather(
            *(
                Dispatcher(PostgresSendLedger(pool), sender, FakeEmailSender(clock), clock).deliver(CLAIM, MESSAGE)
                for pool, sender in zip(pools, senders, strict=True)
            )
        )
    finally:
        for pool in pools:
            await pool.close()
        for sender in senders:
            await sender.close()

    assert posts(live_twilio) == 1
    assert sum(1 for r in results if isinstance(r, Delivered) and not r.earlier) == 1
    entry = await PostgresSendLedger(database).get(KEY)
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, live_twilio.messages[0]["sid"])


async def test_five_concurrent_duplicate_email_jobs_make_one_sendgrid_request(dsn: str) -> None:
    """The same for email: one SendGrid request for five concurrent deliveries of one key."""
    clock = SystemClock()
    key = "dunning:inv-1:email"
    claim = SendClaim(
        key,
        OrgId("org-1"),
        ContactId("contact-1"),
        Channel.EMAIL,
        MessagePurpose.TRANSACTIONAL,
        EmailAddress(CANARY_ADDRESS),
    )
    message = EmailMessage(key, EmailAddress(CANARY_ADDRESS), "Balance", CANARY_BODY)
    async with running(FakeSendGrid()) as fake:
        fake.script(Stall(0.3))
        sender = SendGridEmailSender(
            fake.api_key, EmailAddress("billing@clinic.example.com"), clock, host=fake.base_url
        )
        pools = [await PostgresDatabase.connect(dsn, max_size=2) for _ in range(5)]
        try:
            await asyncio.gather(
                *(
                    Dispatcher(PostgresSendLedger(pool), FakeSmsSender(clock), sender, clock).deliver(claim, message)
                    for pool in pools
                )
            )
        finally:
            for pool in pools:
                await pool.close()
        assert posts(fake) == 1


def start_child(settings: dict[str, object]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.messaging.send_in_child", json.dumps(settings)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def wait_for_state(ledger: PostgresSendLedger, state: LedgerState) -> None:
    while (entry := await ledger.get(KEY)) is None or entry.state is not state:  # noqa: ASYNC110  # another process writes it
        await asyncio.sleep(0.05)


def kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("hold_in_limiter", [True, False], ids=["killed-before-request", "killed-awaiting-answer"])
async def test_sigkill_between_claim_and_answer_leaves_the_claim_and_sends_at_most_once(
    dsn: str, database: PostgresDatabase, live_twilio: FakeTwilio, redis: tuple[Redis, str], hold_in_limiter: bool
) -> None:
    """A worker killed after its claim committed leaves it CLAIMED; later runs wait, reconcile, and send once in all."""
    ledger = PostgresSendLedger(database)
    _, prefix = redis
    if not hold_in_limiter:
        live_twilio.script(Stall(300))  # Twilio creates the message, the answer never comes back before the kill
    child = start_child(
        {
            "dsn": dsn,
            "prefix": prefix,
            "account_sid": live_twilio.account_sid,
            "auth_token": live_twilio.auth_token,
            "twilio_url": live_twilio.base_url,
            "hold_in_limiter": hold_in_limiter,
        }
    )
    try:
        await asyncio.wait_for(wait_for_state(ledger, LedgerState.CLAIMED), timeout=60)
        if not hold_in_limiter:
            await asyncio.wait_for(live_twilio.message_created.wait(), timeout=60)
    finally:
        kill(child)

    entry = await ledger.get(KEY)
    assert entry is not None
    assert entry.state is LedgerState.CLAIMED
    assert posts(live_twilio) == (0 if hold_in_limiter else 1)

    clock = FakeClock(SystemClock().now())
    sender = twilio_sender(live_twilio, redis, clock)
    dispatcher = Dispatcher(ledger, sender, FakeEmailSender(clock), clock, settle=SETTLE)
    try:
        soon = await dispatcher.deliver(CLAIM, MESSAGE)
        clock.advance(SETTLE + timedelta(seconds=1))
        later = await dispatcher.deliver(CLAIM, MESSAGE)
        again = await dispatcher.deliver(CLAIM, MESSAGE)
    finally:
        await sender.close()

    assert isinstance(soon, Deferred)
    assert isinstance(later, Delivered)
    assert later.earlier is not hold_in_limiter  # reconciliation found the killed worker's message, or none
    assert again == Delivered(later.provider_message_id, earlier=True)
    assert posts(live_twilio) == 1
    assert len(live_twilio.messages) == 1
    final = await ledger.get(KEY)
    assert final is not None
    assert (final.state, final.provider_message_id) == (LedgerState.SENT, live_twilio.messages[0]["sid"])


async def test_opt_out_answer_fails_the_entry_suppresses_the_number_and_stores_no_pii(
    database: PostgresDatabase, live_twilio: FakeTwilio, redis: tuple[Redis, str]
) -> None:
    """Twilio 21610 marks the entry FAILED with a PII-free reason, suppresses the number, and blocks the next claim."""
    clock = SystemClock()
    ledger = PostgresSendLedger(database)
    sender = twilio_sender(live_twilio, redis, clock)
    live_twilio.script(twilio_error(400, 21610, f"Attempt to send to unsubscribed recipient {CANARY_PHONE}"))
    dispatcher = Dispatcher(ledger, sender, FakeEmailSender(clock), clock)
    try:
        first = await dispatcher.deliver(CLAIM, MESSAGE)
        second = await dispatcher.deliver(
            attrs.evolve(CLAIM, key="reminder:3h:appt-1:sms"),
            attrs.evolve(MESSAGE, ledger_key="reminder:3h:appt-1:sms"),
        )
    finally:
        await sender.close()

    assert isinstance(first, Undeliverable)
    assert first.suppressed is SuppressionReason.OPTED_OUT
    assert second == Suppressed(SuppressionReason.OPTED_OUT)
    entry = await ledger.get(KEY)
    assert entry is not None
    assert entry.state is LedgerState.FAILED
    assert_no_canary(str(entry.reason))
    assert posts(live_twilio) == 1
