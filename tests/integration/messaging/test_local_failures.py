"""A local failure is not an unknown outcome: a failure at each step between the ledger claim and the moment the
Twilio request leaves releases the claim and fails the attempt with a TransientError (the job retries), and the
retry sends the message once; only a failure after the request left leaves the entry UNKNOWN.

Real parts: the Postgres ledger, the Twilio adapter with its Redis rate limiter and reconciliation record, and the
fake Twilio server; each fault is injected at one step.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from structlog.testing import capture_logs

from adapters.messaging.rate_limit import RedisRateLimiter
from adapters.messaging.twilio_sms import TwilioSmsSender
from adapters.postgres import PostgresDatabase, PostgresSendLedger
from domain.delivery import Delivered, Dispatcher
from domain.errors import DeliveryOutcomeUnknown, TransientError
from domain.messages import LedgerState
from tests.integration.messaging.exactly_once_world import CLAIM, KEY, MESSAGE
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.senders import FakeEmailSender
from tests.support.fakeservers.scripted import Reply
from tests.support.fakeservers.twilio import FakeTwilio
from tests.support.scratch import assert_no_canary, scratch_dsn


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def database() -> AsyncIterator[PostgresDatabase]:
    async with scratch_dsn() as dsn:
        found = await PostgresDatabase.connect(dsn, max_size=2)
        yield found
        await found.close()


def _sender(fake: FakeTwilio, shared: tuple[Redis, str], clock: FakeClock, **changes: Any) -> TwilioSmsSender:
    client, prefix = shared
    arguments: dict[str, Any] = {
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "sender": "+15005550006",
        "redis": client,
        "clock": clock,
        "base_url": fake.base_url,
        "record_prefix": f"{prefix}:twilio",
        "rate_limiter": RedisRateLimiter(client, f"{prefix}:rate", 100.0, clock),
    }
    return TwilioSmsSender(**{**arguments, **changes})


def _dead_redis() -> Redis:
    return Redis(host="127.0.0.1", port=_closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


def _library_fails_before_the_transport(sender: TwilioSmsSender) -> None:
    async def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("the library could not build the request")

    sender._transport.request = refuse  # type: ignore[method-assign]  # the seam between library and transport


FAULTS: dict[str, Callable[[FakeTwilio, tuple[Redis, str], FakeClock], TwilioSmsSender]] = {
    "rate limiter unreachable": lambda fake, redis, clock: _sender(
        fake, redis, clock, rate_limiter=RedisRateLimiter(_dead_redis(), "rate", 100.0, clock)
    ),
    "reconciliation record not written": lambda fake, redis, clock: _sender(fake, redis, clock, redis=_dead_redis()),
    "library fails before the transport": lambda fake, redis, clock: _with(
        _sender(fake, redis, clock), _library_fails_before_the_transport
    ),
    "connection refused": lambda fake, redis, clock: _sender(
        fake, redis, clock, base_url=f"http://127.0.0.1:{_closed_port()}"
    ),
}


def _with(sender: TwilioSmsSender, change: Callable[[TwilioSmsSender], None]) -> TwilioSmsSender:
    change(sender)
    return sender


def _posts(fake: FakeTwilio) -> int:
    return sum(1 for request in fake.requests if request.method == "POST")


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_failure_before_the_request_left_releases_the_claim_and_the_retry_sends_once(
    fault: str, database: PostgresDatabase, fake_twilio: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock
) -> None:
    """The attempt fails with a TransientError (so the job retries with backoff), nothing reached Twilio, the
    ledger holds no claim; the retry through a healthy sender sends exactly one message."""
    ledger = PostgresSendLedger(database)
    broken = FAULTS[fault](fake_twilio, redis, clock)
    healthy = _sender(fake_twilio, redis, clock)
    try:
        with pytest.raises(TransientError):
            await Dispatcher(ledger, broken, FakeEmailSender(clock), clock).deliver(CLAIM, MESSAGE)
        assert _posts(fake_twilio) == 0
        assert await ledger.get(KEY) is None

        retried = await Dispatcher(ledger, healthy, FakeEmailSender(clock), clock).deliver(CLAIM, MESSAGE)
    finally:
        await broken.close()
        await healthy.close()
    assert isinstance(retried, Delivered)
    assert not retried.earlier
    assert _posts(fake_twilio) == 1
    entry = await ledger.get(KEY)
    assert entry is not None
    assert entry.state is LedgerState.SENT


async def test_a_failure_after_the_request_left_is_an_unknown_outcome(
    database: PostgresDatabase, fake_twilio: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock
) -> None:
    """An answer the library cannot read (the request did reach Twilio) leaves the entry UNKNOWN, not released."""
    ledger = PostgresSendLedger(database)
    sender = _sender(fake_twilio, redis, clock)
    fake_twilio.script(Reply(201, "not a message resource"))
    try:
        with pytest.raises(DeliveryOutcomeUnknown):
            await Dispatcher(ledger, sender, FakeEmailSender(clock), clock).deliver(CLAIM, MESSAGE)
    finally:
        await sender.close()
    assert _posts(fake_twilio) == 1
    entry = await ledger.get(KEY)
    assert entry is not None
    assert entry.state is LedgerState.UNKNOWN


async def test_a_send_leaves_one_log_line_per_step_with_ids_and_key_only(
    database: PostgresDatabase, fake_twilio: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock
) -> None:
    """Forensics: the claim, the provider request and its answer are one line each, naming the ledger key (and the
    version, the message id), never the number or the text; a duplicate's look at the entry is one line too."""
    ledger = PostgresSendLedger(database)
    sender = _sender(fake_twilio, redis, clock)
    try:
        with capture_logs() as logs:
            await Dispatcher(ledger, sender, FakeEmailSender(clock), clock).deliver(CLAIM, MESSAGE)
            await Dispatcher(ledger, sender, FakeEmailSender(clock), clock).deliver(CLAIM, MESSAGE)
    finally:
        await sender.close()
    assert [line["event"] for line in logs] == [
        "ledger_claimed",
        "provider_request",
        "provider_answered",
        "ledger_taken",
    ]
    assert all(line["ledger_key"] == KEY for line in logs)
    assert logs[2]["provider_message_id"] == fake_twilio.messages[0]["sid"]
    assert_no_canary(repr(logs))
