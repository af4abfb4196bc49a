"""Webhook server fixtures: the real aiohttp app on an ephemeral loopback port over a migrated Postgres database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import attrs
import pytest

from adapters.clock import SystemClock
from adapters.health.server import running_health_server
from adapters.observability.metrics import MetricsRecorder
from adapters.postgres import PostgresDatabase, PostgresSendLedger
from adapters.postgres.feedback import PostgresDeliveryFeedback
from adapters.webhooks.sendgrid import SendGridSignature
from adapters.webhooks.server import WebhookHandlers, build_webhooks_app
from adapters.webhooks.twilio import TwilioWebhooks
from tests.support.fakeservers.webhook_signing import AUTH_TOKEN, PUBLIC_URL, SendGridKeys
from tests.support.postgres import emptied_database, temporary_database

MAX_BODY_BYTES = 64 * 1024


@pytest.fixture(scope="session")
def webhooks_database() -> Iterator[str]:
    with temporary_database("webhooks") as dsn:
        yield dsn


@pytest.fixture
async def db(webhooks_database: str) -> AsyncIterator[PostgresDatabase]:
    async with emptied_database(webhooks_database, max_size=10) as database:
        yield database


@pytest.fixture(scope="session")
def sendgrid_keys() -> SendGridKeys:
    return SendGridKeys()


@attrs.frozen
class Webhooks:
    """The running server (``url``), an HTTP session, and the stores behind it."""

    url: str
    http: aiohttp.ClientSession
    ledger: PostgresSendLedger
    feedback: PostgresDeliveryFeedback
    db: PostgresDatabase
    metrics: MetricsRecorder


@pytest.fixture
async def webhooks(db: PostgresDatabase, sendgrid_keys: SendGridKeys) -> AsyncIterator[Webhooks]:
    feedback = PostgresDeliveryFeedback(db)
    metrics = MetricsRecorder("unflushed")  # the tests flush it under a prefix of their own
    handlers = WebhookHandlers(
        feedback=feedback,
        clock=SystemClock(),
        twilio=TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL),
        sendgrid=SendGridSignature(sendgrid_keys.public_key, max_age_seconds=300),
        max_body_bytes=MAX_BODY_BYTES,
        metrics=metrics,
    )
    async with (
        running_health_server(build_webhooks_app(handlers), "127.0.0.1", 0) as port,
        aiohttp.ClientSession() as http,
    ):
        yield Webhooks(f"http://127.0.0.1:{port}", http, PostgresSendLedger(db), feedback, db, metrics)
