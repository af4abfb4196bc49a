"""Canary: phone numbers, addresses and bodies arriving by webhook never reach the log in clear, at debug level,
whether the request is applied, ignored or refused."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from yarl import URL

from adapters.observability.logging import configure_logging
from tests.integration.webhooks.conftest import Webhooks
from tests.support.canaries import EMAIL, FIRST_NAME, PHONE, leaked
from tests.support.fakeservers.webhook_signing import SendGridKeys, twilio_headers


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything logged during the test, through the production pipeline (JSON, redaction), at debug level."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("debug", production=True, stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


async def test_webhook_traffic_logs_no_canary(
    webhooks: Webhooks, sendgrid_keys: SendGridKeys, log_output: io.StringIO
) -> None:
    """STOP, START, a conversation reply, a status callback, SendGrid bounce and spam events, and refused requests
    all log their events with the canaries masked or absent."""
    inbound = "/webhooks/twilio/inbound"
    for n, body in enumerate(("STOP", "START", f"Hi it's {FIRST_NAME}, call me at {PHONE} or {EMAIL}")):
        form = {"MessageSid": f"SMc{n}", "From": PHONE, "To": "+15005550006", "Body": body}
        async with webhooks.http.post(webhooks.url + inbound, data=form, headers=twilio_headers(inbound, form)):
            pass
    status_path = "/webhooks/twilio/status?ledger_key=reminder%3A3h%3Aa-1%3Asms"
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": PHONE}
    async with webhooks.http.post(
        URL(webhooks.url + status_path, encoded=True), data=form, headers=twilio_headers(status_path, form)
    ):
        pass
    events = json.dumps(
        [{"event": kind, "email": EMAIL, "sg_event_id": f"e{kind}", "reason": f"550 {EMAIL} unknown"}
         for kind in ("bounce", "spamreport")]
    ).encode()  # fmt: skip
    async with webhooks.http.post(webhooks.url + "/webhooks/sendgrid/events", data=events,
                                  headers=sendgrid_keys.headers(events)):  # fmt: skip
        pass
    for headers in ({}, {"X-Twilio-Signature": "forged"}):
        async with webhooks.http.post(webhooks.url + inbound, data={"From": PHONE, "Body": "STOP"}, headers=headers):
            pass
    output = log_output.getvalue()
    events_logged = {json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")}
    assert {"consent_changed", "consent_change_received", "inbound_sms_ignored", "webhook_refused"} <= events_logged
    assert leaked(output) == []
