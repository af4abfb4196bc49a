"""A store outage answers 503 (the provider delivers again later) and logs no body."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from adapters.clock import SystemClock
from adapters.health.server import running_health_server
from adapters.webhooks.server import WebhookHandlers, build_webhooks_app
from adapters.webhooks.twilio import TwilioWebhooks
from domain.errors import TransientError
from domain.feedback import ConsentChange, DeliveryProgress, DeliveryReport, FeedbackApplied
from tests.support.fakeservers.webhook_signing import AUTH_TOKEN, PUBLIC_URL, twilio_headers


class UnreachableFeedback:
    async def apply(self, reports: Sequence[DeliveryReport], changes: Sequence[ConsentChange]) -> FeedbackApplied:
        raise TransientError("connection refused")

    async def progress(self, key: str) -> DeliveryProgress | None:
        raise TransientError("connection refused")


async def test_a_stop_during_a_database_outage_is_answered_503() -> None:
    """Twilio gets 503 for a STOP it must deliver again; nothing pretends the opt-out was stored."""
    handlers = WebhookHandlers(
        UnreachableFeedback(), SystemClock(), TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL), None, 65536
    )
    path, form = "/webhooks/twilio/inbound", {"MessageSid": "SM1", "From": "+14155550123", "Body": "STOP"}
    async with (
        running_health_server(build_webhooks_app(handlers), "127.0.0.1", 0) as port,
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{path}", data=form, headers=twilio_headers(path, form)) as answer,
    ):
        assert answer.status == 503
