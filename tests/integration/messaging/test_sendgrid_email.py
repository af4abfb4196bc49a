"""SendGridEmailSender (the real sendgrid library, in a thread) against the local fake SendGrid: wire and error rows."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from adapters.messaging.rate_limit import RedisRateLimiter
from adapters.messaging.sendgrid_email import DEFAULT_RATE_LIMIT_BACKOFF, SendGridEmailSender, scrub
from adapters.provider_logging import pin_provider_library_logging
from domain.errors import (
    ClaimLapsed,
    ConfigurationError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    TransientError,
)
from domain.messages import EmailMessage
from domain.values import EmailAddress
from tests.support.builders import FAR_DEADLINE
from tests.support.fakes.clock import FakeClock, LateClock
from tests.support.fakeservers.scripted import Delay, Reply, Reset, Step
from tests.support.fakeservers.sendgrid import FakeSendGrid, sendgrid_error
from tests.support.scratch import (
    CANARY_ADDRESS,
    CANARY_BODY,
    CANARY_PAYMENT_LINK,
    CANARY_PHONE,
    assert_no_canary,
)

TIMEOUT = timedelta(seconds=0.3)
VERIFIED_SENDER = EmailAddress("reminders@clinic.example.com")


def canary_email(key: str = "dunning:inv-1:email") -> EmailMessage:
    return EmailMessage(key, EmailAddress(CANARY_ADDRESS), "Your balance, Canary", CANARY_BODY, f"<p>{CANARY_BODY}</p>")


def make_sender(fake: FakeSendGrid, clock: FakeClock, **overrides: object) -> SendGridEmailSender:
    settings: dict[str, object] = {
        "api_key": fake.api_key,
        "from_email": VERIFIED_SENDER,
        "clock": clock,
        "from_name": "Clinic",
        "host": fake.base_url,
        "timeout": TIMEOUT,
    }
    settings.update(overrides)
    return SendGridEmailSender(**settings)  # type: ignore[arg-type]


@pytest.fixture
def sender(fake_sendgrid: FakeSendGrid, clock: FakeClock) -> SendGridEmailSender:
    return make_sender(fake_sendgrid, clock)


async def test_accepted_email_returns_the_message_id_and_carries_the_ledger_key(
    sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid
) -> None:
    """A send posts v3 JSON with the Bearer key, verified sender and ledger key in custom_args; 202's id returns."""
    receipt = await sender.send(canary_email(), FAR_DEADLINE)

    [request] = fake_sendgrid.requests
    assert request.headers["Authorization"] == f"Bearer {fake_sendgrid.api_key}"
    assert [receipt.provider_message_id] == fake_sendgrid.message_ids
    [payload] = fake_sendgrid.accepted
    assert payload["from"] == {"email": VERIFIED_SENDER.address, "name": "Clinic"}
    assert payload["personalizations"][0]["to"] == [{"email": CANARY_ADDRESS}]
    assert payload["custom_args"] == {"ledger_key": "dunning:inv-1:email"}
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]


async def test_400_is_rejected_with_the_api_text_cut_of_addresses_numbers_and_urls(
    sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid
) -> None:
    """A 400 keeps SendGrid's explanation but never the address, number or link it may quote."""
    fake_sendgrid.script(
        sendgrid_error(
            400,
            f"Does not contain a valid address: {CANARY_ADDRESS} (see {CANARY_PAYMENT_LINK}, call {CANARY_PHONE})",
            "personalizations.0.to.0.email",
            "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to",
        )
    )
    with pytest.raises(DeliveryRejected) as caught:
        await sender.send(canary_email(), FAR_DEADLINE)
    assert caught.value.code == "400"
    assert caught.value.suppress is None
    assert "personalizations.0.to.0.email: Does not contain a valid address: <address>" in str(caught.value)
    assert_no_canary(str(caught.value) + repr(caught.value))


async def test_413_is_rejected(sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid) -> None:
    """A payload too large is a permanent rejection."""
    fake_sendgrid.script(sendgrid_error(413, "Payload Too Large"))
    with pytest.raises(DeliveryRejected) as caught:
        await sender.send(canary_email(), FAR_DEADLINE)
    assert caught.value.code == "413"


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_api_key_is_a_configuration_error(
    sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid, status: int
) -> None:
    """401 and 403 mean the API key is wrong or lacks the permission: ConfigurationError."""
    fake_sendgrid.script(sendgrid_error(status, "The provided authorization grant is invalid, expired, or revoked"))
    with pytest.raises(ConfigurationError) as caught:
        await sender.send(canary_email(), FAR_DEADLINE)
    assert_no_canary(str(caught.value) + repr(caught.value))


async def test_wrong_api_key_is_refused_by_the_fake_as_a_configuration_error(
    fake_sendgrid: FakeSendGrid, clock: FakeClock
) -> None:
    """The fake's own key check answers 401, which is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        await make_sender(fake_sendgrid, clock, api_key="SG.wrong").send(canary_email(), FAR_DEADLINE)
    assert fake_sendgrid.accepted == []


async def test_429_defers_until_x_ratelimit_reset(
    sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid, clock: FakeClock
) -> None:
    """A 429 becomes DeliveryRateLimited at the instant of X-RateLimit-Reset (Unix seconds)."""
    reset = clock.now() + timedelta(seconds=42)
    fake_sendgrid.script(
        sendgrid_error(
            429,
            "too many requests",
            headers={
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(reset.timestamp())),
            },
        )
    )
    with pytest.raises(DeliveryRateLimited) as caught:
        await sender.send(canary_email(), FAR_DEADLINE)
    assert caught.value.retry_at == reset


async def test_429_without_reset_header_defers_by_the_default_backoff(
    sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid, clock: FakeClock
) -> None:
    """A 429 without X-RateLimit-Reset defers by the default backoff."""
    fake_sendgrid.script(sendgrid_error(429, "too many requests"))
    with pytest.raises(DeliveryRateLimited) as caught:
        await sender.send(canary_email(), FAR_DEADLINE)
    assert caught.value.retry_at == clock.now() + DEFAULT_RATE_LIMIT_BACKOFF


UNKNOWN_OUTCOMES: list[object] = [
    pytest.param(sendgrid_error(500, "internal error"), id="500"),
    pytest.param(Reply(503, None), id="503-no-body"),
    pytest.param(Delay(TIMEOUT.total_seconds() * 4), id="timeout"),
    pytest.param(Reset(), id="connection-reset"),
]


@pytest.mark.parametrize("step", UNKNOWN_OUTCOMES)
async def test_ambiguous_failures_are_unknown_outcomes(
    sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid, step: Step
) -> None:
    """5xx answers, a reply slower than the client timeout and a reset connection are DeliveryOutcomeUnknown."""
    fake_sendgrid.script(step)
    with pytest.raises(DeliveryOutcomeUnknown) as caught:
        await sender.send(canary_email(), FAR_DEADLINE)
    assert_no_canary(str(caught.value) + repr(caught.value))


async def test_unreachable_api_is_transient(clock: FakeClock) -> None:
    """A refused connection never reached SendGrid: TransientError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = make_sender(FakeSendGrid(base_url=f"http://127.0.0.1:{port}"), clock)
    with pytest.raises(TransientError) as caught:
        await sender.send(canary_email(), FAR_DEADLINE)
    assert_no_canary(str(caught.value) + repr(caught.value))


async def test_shared_rate_limit_defers_instead_of_calling_sendgrid(
    fake_sendgrid: FakeSendGrid, redis: tuple[Redis, str], clock: FakeClock
) -> None:
    """With the limiter's slot too far away, the send is DeliveryRateLimited and SendGrid gets no request."""
    client, prefix = redis
    limiter = RedisRateLimiter(client, f"{prefix}:limit", per_second=0.01, clock=clock, max_wait=timedelta(0))
    sender = make_sender(fake_sendgrid, clock, rate_limiter=limiter)
    await sender.send(canary_email("first"), FAR_DEADLINE)
    with pytest.raises(DeliveryRateLimited):
        await sender.send(canary_email("second"), FAR_DEADLINE)
    assert len(fake_sendgrid.requests) == 1


@pytest.fixture
def debug_logging() -> Iterator[None]:
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.setLevel(previous)
    for name in ("twilio", "twilio.http_client", "twilio.async_http_client", "python_http_client"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.usefixtures("debug_logging")
async def test_pinned_library_logging_leaks_no_payload_at_debug(
    sender: SendGridEmailSender, fake_sendgrid: FakeSendGrid, caplog: pytest.LogCaptureFixture
) -> None:
    """With the root logger at DEBUG, python_http_client would log the payload and key; pinned, it logs nothing."""
    pin_provider_library_logging()
    caplog.set_level(logging.DEBUG)
    await sender.send(canary_email("first"), FAR_DEADLINE)
    fake_sendgrid.script(sendgrid_error(400, f"bad address {CANARY_ADDRESS}"))
    with pytest.raises(DeliveryRejected):
        await sender.send(canary_email("second"), FAR_DEADLINE)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert_no_canary(logged)
    assert fake_sendgrid.api_key not in logged


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("address a.b+c@mail.example.com refused", "address <address> refused"),
        ("see https://docs.sendgrid.com/x?y=1 now", "see <url> now"),
        ("number +1 (415) 555-0199 blocked", "number <number> blocked"),
        ("subject is longer than 998 characters", "subject is longer than 998 characters"),
    ],
)
def test_scrub_cuts_addresses_urls_and_numbers_but_keeps_short_counts(text: str, expected: str) -> None:
    """The error-text scrubber removes contact data and links but leaves small numbers of the explanation."""
    assert scrub(text) == expected


@pytest.mark.parametrize(("ahead", "posts"), [(timedelta(seconds=10), 1), (timedelta(seconds=9.999), 0)])
async def test_a_request_that_could_outlast_its_claims_deadline_is_refused_unsent(
    fake_sendgrid: FakeSendGrid, clock: FakeClock, ahead: timedelta, posts: int
) -> None:
    """With its 10 s bound, a request that could still be unanswered at the deadline is refused (ClaimLapsed)."""
    sender = make_sender(fake_sendgrid, clock, timeout=timedelta(seconds=10))
    try:
        await sender.send(canary_email(), clock.now() + ahead)
    except ClaimLapsed:
        assert posts == 0
    assert len(fake_sendgrid.requests) == posts


async def test_the_deadline_is_checked_again_in_the_requests_thread(fake_sendgrid: FakeSendGrid) -> None:
    """The loop blocked after the first check (the wait for a thread): the thread refuses before the request is
    written, and nothing reaches SendGrid."""
    clock = LateClock()
    with pytest.raises(ClaimLapsed):
        await make_sender(fake_sendgrid, clock).send(canary_email(), clock.current + timedelta(minutes=1))
    assert fake_sendgrid.requests == []
