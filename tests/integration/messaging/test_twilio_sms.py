"""TwilioSmsSender (the real twilio library) against the local fake Twilio: wire format, error rows, reconciliation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from redis.asyncio import Redis

from adapters.messaging.rate_limit import RedisRateLimiter
from adapters.messaging.twilio_sms import CLOCK_SKEW_MARGIN, DEFAULT_RATE_LIMIT_BACKOFF, TwilioSmsSender
from domain.errors import (
    ClaimLapsed,
    ConfigurationError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    SuppressionReason,
    TransientError,
)
from domain.messages import SmsMessage
from domain.values import PhoneNumber
from tests.support.builders import FAR_DEADLINE
from tests.support.fakes.clock import FakeClock, LateClock
from tests.support.fakeservers.scripted import Delay, Reply, Reset, Step
from tests.support.fakeservers.twilio import FakeTwilio, twilio_error
from tests.support.scratch import CANARY_BODY, CANARY_PHONE, assert_no_canary

TIMEOUT = timedelta(seconds=0.3)
FROM_NUMBER = "+15005550006"
CALLBACK = "https://crm.example.test/hooks/twilio/status"


def canary_sms(key: str = "reminder:appt-1:24h:sms", body: str = CANARY_BODY) -> SmsMessage:
    return SmsMessage(key, PhoneNumber(CANARY_PHONE), body)


def make_sender(fake: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock, **overrides: object) -> TwilioSmsSender:
    client, prefix = redis
    settings: dict[str, object] = {
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "sender": FROM_NUMBER,
        "redis": client,
        "clock": clock,
        "status_callback_url": CALLBACK,
        "base_url": fake.base_url,
        "timeout": TIMEOUT,
        "record_prefix": f"{prefix}:twilio",
    }
    settings.update(overrides)
    return TwilioSmsSender(**settings)  # type: ignore[arg-type]


@pytest.fixture
async def sender(fake_twilio: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock) -> AsyncIterator[TwilioSmsSender]:
    made = make_sender(fake_twilio, redis, clock)
    yield made
    await made.close()


async def test_accepted_message_is_sent_form_encoded_with_basic_auth_and_returns_the_sid(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio
) -> None:
    """A send posts To, From, Body and the ledger key in StatusCallback, and returns Twilio's message sid."""
    receipt = await sender.send(canary_sms(), FAR_DEADLINE)

    [created] = fake_twilio.messages
    assert receipt.provider_message_id == created["sid"]
    assert (created["to"], created["from"], created["body"]) == (CANARY_PHONE, FROM_NUMBER, CANARY_BODY)
    callback = urlsplit(fake_twilio.status_callbacks[created["sid"]])
    assert parse_qs(callback.query) == {"ledger_key": ["reminder:appt-1:24h:sms"]}
    [request] = fake_twilio.requests
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_messaging_service_sid_is_sent_instead_of_a_from_number(
    fake_twilio: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock
) -> None:
    """A sender starting with MG travels as MessagingServiceSid, with no From."""
    sender = make_sender(fake_twilio, redis, clock, sender="MG" + "1" * 32)
    try:
        await sender.send(canary_sms(), FAR_DEADLINE)
    finally:
        await sender.close()
    [created] = fake_twilio.messages
    assert (created["messaging_service_sid"], created["from"]) == ("MG" + "1" * 32, None)


REJECTIONS = [
    pytest.param(
        twilio_error(400, 21610, f"Attempt to send to unsubscribed recipient {CANARY_PHONE}"),
        "21610",
        SuppressionReason.OPTED_OUT,
        id="21610-unsubscribed",
    ),
    pytest.param(
        twilio_error(400, 21211, f"The 'To' number {CANARY_PHONE} is not a valid phone number."),
        "21211",
        SuppressionReason.INVALID_NUMBER,
        id="21211-invalid-number",
    ),
    pytest.param(
        twilio_error(400, 21614, f"To number: {CANARY_PHONE}, is not a mobile number"),
        "21614",
        SuppressionReason.INVALID_NUMBER,
        id="21614-not-mobile",
    ),
    pytest.param(
        twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit."),
        "21617",
        None,
        id="21617-body-too-long",
    ),
]


@pytest.mark.parametrize(("reply", "code", "suppress"), REJECTIONS)
async def test_permanent_rejections_carry_code_and_suppression(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, reply: Reply, code: str, suppress: SuppressionReason | None
) -> None:
    """Twilio's permanent error codes become DeliveryRejected with the code and the suppression to record."""
    fake_twilio.script(reply)
    with pytest.raises(DeliveryRejected) as caught:
        await sender.send(canary_sms(), FAR_DEADLINE)
    assert (caught.value.code, caught.value.suppress) == (code, suppress)
    assert_no_canary(str(caught.value) + repr(caught.value))


async def test_429_with_retry_after_defers_until_then(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """HTTP 429 with code 20429 becomes DeliveryRateLimited at now + Retry-After seconds."""
    fake_twilio.script(twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "17"}))
    with pytest.raises(DeliveryRateLimited) as caught:
        await sender.send(canary_sms(), FAR_DEADLINE)
    assert caught.value.retry_at == clock.now() + timedelta(seconds=17)
    assert caught.value.code == "20429"


async def test_429_without_retry_after_defers_by_the_default_backoff(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """A 429 without Retry-After defers by the default backoff."""
    fake_twilio.script(twilio_error(429, 20429, "Too Many Requests"))
    with pytest.raises(DeliveryRateLimited) as caught:
        await sender.send(canary_sms(), FAR_DEADLINE)
    assert caught.value.retry_at == clock.now() + DEFAULT_RATE_LIMIT_BACKOFF


async def test_429_with_an_http_date_retry_after_defers_until_that_date(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """Retry-After given as an HTTP date is honoured as that instant."""
    fake_twilio.script(twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "Thu, 15 Jan 2026 12:05:00 GMT"}))
    with pytest.raises(DeliveryRateLimited) as caught:
        await sender.send(canary_sms(), FAR_DEADLINE)
    assert caught.value.retry_at == datetime(2026, 1, 15, 12, 5, tzinfo=UTC)


UNKNOWN_OUTCOMES: list[object] = [
    pytest.param(twilio_error(500, 20500, "Internal Server Error"), id="500"),
    pytest.param(Reply(503, None), id="503-no-body"),
    pytest.param(Delay(TIMEOUT.total_seconds() * 4), id="timeout"),
    pytest.param(Reset(), id="connection-reset"),
]


@pytest.mark.parametrize("step", UNKNOWN_OUTCOMES)
async def test_ambiguous_failures_are_unknown_outcomes(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, step: Step
) -> None:
    """5xx answers, a reply slower than the client timeout and a reset connection are DeliveryOutcomeUnknown."""
    fake_twilio.script(step)
    with pytest.raises(DeliveryOutcomeUnknown) as caught:
        await sender.send(canary_sms(), FAR_DEADLINE)
    assert_no_canary(str(caught.value) + repr(caught.value))


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(twilio_error(401, 20003, "Authenticate"), id="401-20003"),
        pytest.param(twilio_error(403, 20003, "Permission Denied"), id="403"),
    ],
)
async def test_refused_credentials_are_a_configuration_error(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, reply: Reply
) -> None:
    """401/403 (Twilio 20003) become ConfigurationError: no retry can fix them."""
    fake_twilio.script(reply)
    with pytest.raises(ConfigurationError) as caught:
        await sender.send(canary_sms(), FAR_DEADLINE)
    assert_no_canary(str(caught.value) + repr(caught.value))


async def test_wrong_auth_token_is_a_configuration_error(
    fake_twilio: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock
) -> None:
    """The fake's own basic-auth check refuses a wrong token with 20003, which is a ConfigurationError."""
    sender = make_sender(fake_twilio, redis, clock, auth_token="wrong-token")
    try:
        with pytest.raises(ConfigurationError):
            await sender.send(canary_sms(), FAR_DEADLINE)
    finally:
        await sender.close()
    assert fake_twilio.messages == []


async def test_unreachable_api_is_transient(redis: tuple[Redis, str], clock: FakeClock) -> None:
    """A refused connection never reached Twilio: TransientError, not an unknown outcome."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeTwilio(now=clock.now, base_url=f"http://127.0.0.1:{port}")
    sender = make_sender(fake, redis, clock)
    try:
        with pytest.raises(TransientError) as caught:
            await sender.send(canary_sms(), FAR_DEADLINE)
    finally:
        await sender.close()
    assert_no_canary(str(caught.value) + repr(caught.value))


async def test_shared_rate_limit_defers_instead_of_calling_twilio(
    fake_twilio: FakeTwilio, redis: tuple[Redis, str], clock: FakeClock
) -> None:
    """With the limiter's slot too far away, the send is DeliveryRateLimited and Twilio gets no request."""
    client, prefix = redis
    limiter = RedisRateLimiter(client, f"{prefix}:limit", per_second=0.01, clock=clock, max_wait=timedelta(0))
    sender = make_sender(fake_twilio, redis, clock, rate_limiter=limiter)
    try:
        await sender.send(canary_sms("first"), FAR_DEADLINE)
        with pytest.raises(DeliveryRateLimited):
            await sender.send(canary_sms("second"), FAR_DEADLINE)
    finally:
        await sender.close()
    assert len(fake_twilio.messages) == 1


async def test_find_sent_finds_a_message_whose_answer_was_lost(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """A send that timed out but was created at Twilio is found by its ledger key (recipient, body, time)."""
    since = clock.now()
    fake_twilio.script(Delay(TIMEOUT.total_seconds() * 3))
    with pytest.raises(DeliveryOutcomeUnknown):
        await sender.send(canary_sms(), FAR_DEADLINE)
    await asyncio.wait_for(fake_twilio.message_created.wait(), timeout=10)

    found = await sender.find_sent("reminder:appt-1:24h:sms", since)

    assert found is not None
    assert found.provider_message_id == fake_twilio.messages[0]["sid"]
    listing = fake_twilio.requests[-1]
    assert (listing.method, listing.query["To"], listing.query["From"]) == ("GET", CANARY_PHONE, FROM_NUMBER)


async def test_find_sent_ignores_another_message_to_the_same_recipient(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """A reset before Twilio created anything is not confused with another message sent to the same number."""
    since = clock.now()
    await sender.send(canary_sms("nurture:step-1", body="Another message"), FAR_DEADLINE)
    fake_twilio.script(Reset())
    with pytest.raises(DeliveryOutcomeUnknown):
        await sender.send(canary_sms("reminder:appt-1:24h:sms"), FAR_DEADLINE)

    assert await sender.find_sent("reminder:appt-1:24h:sms", since) is None
    assert await sender.find_sent("nurture:step-1", since) is not None


async def test_find_sent_ignores_messages_created_before_since_beyond_the_skew_margin(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """A matching message created well before ``since`` is not the one being reconciled."""
    await sender.send(canary_sms(), FAR_DEADLINE)
    later = clock.now() + CLOCK_SKEW_MARGIN + timedelta(seconds=1)
    assert await sender.find_sent("reminder:appt-1:24h:sms", later) is None


async def test_find_sent_tolerates_whole_second_dates_and_clock_skew(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """Twilio's date_created drops the fraction and its clock may lag ours: a claim at .9 s still finds it."""
    clock.set(datetime(2026, 1, 15, 12, 0, 0, 900_000, tzinfo=UTC))
    since = clock.now() + timedelta(seconds=30)
    receipt = await sender.send(canary_sms(), FAR_DEADLINE)
    assert await sender.find_sent("reminder:appt-1:24h:sms", since) == receipt


async def test_find_sent_of_a_key_never_sent_asks_twilio_nothing(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio
) -> None:
    """Without a send record for the key, nothing was handed to Twilio: None without a request."""
    assert await sender.find_sent("never-sent", datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert fake_twilio.requests == []


async def test_find_sent_failure_is_transient_without_pii(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """A lookup Twilio cannot answer raises TransientError whose text names no recipient."""
    since = clock.now()
    await sender.send(canary_sms(), FAR_DEADLINE)
    fake_twilio.script(twilio_error(500, 20500, f"Internal error for {CANARY_PHONE}"))
    with pytest.raises(TransientError) as caught:
        await sender.find_sent("reminder:appt-1:24h:sms", since)
    assert_no_canary(str(caught.value) + repr(caught.value))


@pytest.mark.parametrize(("ahead", "posts"), [(TIMEOUT, 1), (TIMEOUT - timedelta(milliseconds=1), 0)])
async def test_a_request_that_could_outlast_its_claims_deadline_is_refused_unsent(
    sender: TwilioSmsSender, fake_twilio: FakeTwilio, clock: FakeClock, ahead: timedelta, posts: int
) -> None:
    """The request must be over, answered or abandoned at the timeout, by the deadline: one that could still be in
    flight then is refused (ClaimLapsed) before it is written."""
    try:
        await sender.send(canary_sms(), clock.now() + ahead)
    except ClaimLapsed:
        assert posts == 0
    assert len(fake_twilio.messages) == sum(r.method == "POST" for r in fake_twilio.requests) == posts


async def test_the_deadline_is_checked_again_as_the_request_starts(
    fake_twilio: FakeTwilio, redis: tuple[Redis, str]
) -> None:
    """The loop blocked after the first check (the reconciliation record, the library building the request): the
    transport refuses at the last step, and nothing reaches Twilio."""
    clock = LateClock()
    sender = make_sender(fake_twilio, redis, clock)
    try:
        with pytest.raises(ClaimLapsed):
            await sender.send(canary_sms(), clock.current + timedelta(minutes=1))
    finally:
        await sender.close()
    assert fake_twilio.requests == []
