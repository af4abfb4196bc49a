"""Sentry through a local ingest fake with the real SDK: one scrubbed event per final failure, none per retry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import sentry_sdk

from adapters.observability.logging import configure_logging, get_logger, job_log_context
from adapters.observability.sentry import close_sentry, init_sentry, report_alert, report_final_failure
from domain.errors import TransientError
from entrypoints.fatal_listener import sentry_alert
from tests.support.canaries import AUTH_TOKEN, EMAIL, PAYMENT_LINK, PHONE, job_data, leaked
from tests.support.fakeservers.sentry import FakeSentry

pytestmark = pytest.mark.usefixtures("restore_logging")

MAX_ATTEMPTS = 3


@pytest.fixture
async def sentry() -> AsyncIterator[FakeSentry]:
    """The fake ingest server and the SDK pointed at it; the SDK is closed after the test."""
    server = FakeSentry()
    await server.start()
    configure_logging("info", production=True)
    init_sentry(server.dsn, environment="test", release="clientflow-worker@test")
    try:
        yield server
    finally:
        await asyncio.to_thread(close_sentry, 1.0)
        await server.close()


async def _delivered() -> None:
    """Let the SDK's background thread send what is queued while this loop serves the fake."""
    await asyncio.to_thread(sentry_sdk.flush, 5.0)


def _process_attempt(attempt: int, data: dict[str, object]) -> None:
    """What the runtime does with a failing attempt: log it, and report it only when it is the last one."""
    log = get_logger("adapters.bullmq.runtime")
    with job_log_context("dunning", "process-dunning", "job-7", "org_canary"):
        try:
            secret_laden_local = dict(data, token=AUTH_TOKEN)
            raise TransientError(f"provider timeout sending {secret_laden_local['paymentLink']} to {PHONE}")
        except TransientError as exc:
            log.exception("job attempt failed", attempt=attempt, final=attempt == MAX_ATTEMPTS)
            logging.getLogger("bullmq").error("job %s failed: %s", "job-7", exc)
            if attempt == MAX_ATTEMPTS:
                report_final_failure("dunning", "process-dunning", "job-7", attempt, "org_canary", exc)


async def test_final_failure_sends_exactly_one_tagged_event(sentry: FakeSentry) -> None:
    """Three failing attempts (two retried, one final) log three errors but produce exactly one Sentry event."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _process_attempt(attempt, job_data())
    await _delivered()

    events = sentry.events()
    assert len(events) == 1
    event = events[0]
    assert event["tags"] == {"queue": "dunning", "job_name": "process-dunning", "attempt": "3", "org_id": "org_canary"}
    assert event["environment"] == "test"
    assert event["release"] == "clientflow-worker@test"
    assert event["contexts"]["job"]["job_id"] == "job-7"
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "TransientError"
    assert exception["value"].startswith("provider timeout sending https://pay.example.com/i/")
    frames = exception["stacktrace"]["frames"]
    assert frames
    assert all("vars" not in frame for frame in frames)
    assert sentry.envelopes[0].project == "42"
    assert sentry.requests[0].headers["Content-Encoding"] == "gzip"  # the SDK's real, compressed envelope


async def test_retried_attempts_send_nothing(sentry: FakeSentry) -> None:
    """Attempts that will be retried are logged at error level, and no error event reaches Sentry."""
    for attempt in range(1, MAX_ATTEMPTS):
        _process_attempt(attempt, job_data())
    await _delivered()
    assert sentry.events() == []


async def test_no_canary_reaches_sentry(sentry: FakeSentry) -> None:
    """Neither the exception text, tags, breadcrumbs nor extras carry the canaries in any envelope."""
    sentry_sdk.add_breadcrumb(category="http", message=f"POST {PAYMENT_LINK}?email={EMAIL}", data={"to": PHONE})
    sentry_sdk.set_extra("job_data", job_data())
    _process_attempt(MAX_ATTEMPTS, job_data())
    report_alert(f"worker for queue dunning gave up; last recipient {PHONE}", program="worker-dunning")
    await _delivered()

    assert len(sentry.events()) == 2
    assert sentry.raw_bodies
    for body in sentry.raw_bodies:
        assert leaked(body) == []
    crumb = sentry.events()[0]["breadcrumbs"]["values"][-1]
    assert crumb["message"].startswith("POST https://pay.example.com/i/")
    assert crumb["data"] == {"to": "[REDACTED]"}


async def test_alert_is_one_error_event_with_tags(sentry: FakeSentry) -> None:
    """A supervisor FATAL or configuration alert is one error-level event, message masked, tags kept."""
    report_alert("program worker-reminders entered FATAL", program="worker-reminders", kind="fatal")
    await _delivered()
    (event,) = sentry.events()
    assert event["level"] == "error"
    assert event["message"] == "program worker-reminders entered FATAL"
    assert event["tags"] == {"program": "worker-reminders", "kind": "fatal"}


async def test_reporting_does_not_wait_for_the_network(sentry: FakeSentry) -> None:
    """The report returns while this loop (which serves the fake) is busy: sending happens on the SDK's thread."""
    report_final_failure("snapshots", "process-snapshots", "job-9", 3, None, RuntimeError("boom"))
    assert sentry.envelopes == []  # the fake cannot have answered: its loop has not run since the call
    await _delivered()
    assert len(sentry.events()) == 1
    assert "org_id" not in sentry.events()[0]["tags"]


async def test_without_init_reports_are_no_ops() -> None:
    """With no DSN configured the runtime can call the reporting functions unconditionally."""
    await asyncio.to_thread(close_sentry, 1.0)
    assert report_final_failure("dunning", "process-dunning", "1", 3, "org", RuntimeError("x")) is None
    assert report_alert("nothing listens") is None


async def test_command_line_and_http_breadcrumbs_never_leave(sentry: FakeSentry) -> None:
    """A subprocess command line naming a person and an HTTP request breadcrumb are dropped from the final event,
    while our own breadcrumbs stay (masked)."""
    sentry_sdk.add_breadcrumb(category="subprocess", message="node enqueue.js --name 'Ada Lovelace' --street 'Elm 5'")
    sentry_sdk.add_breadcrumb(category="httplib", data={"url": "https://api.twilio.com/2010-04-01/Accounts/AC1"})
    sentry_sdk.add_breadcrumb(category="job", message=f"sending to {PHONE}")
    _process_attempt(MAX_ATTEMPTS, job_data())
    await _delivered()

    [event] = sentry.events()
    crumbs = event["breadcrumbs"]["values"]
    assert [c.get("category") for c in crumbs if c.get("category") in ("subprocess", "httplib", "job")] == ["job"]
    assert "Lovelace" not in str(event)
    assert "Accounts/AC1" not in str(event)
    assert not leaked(str(event))


async def test_the_fatal_listener_reports_every_alert_not_only_the_first(sentry: FakeSentry) -> None:
    """The listener lives on after an alert: a second program going FATAL reaches Sentry too (the SDK stays open)."""
    await asyncio.to_thread(sentry_alert, "supervisord program health:health is FATAL", "health")
    await asyncio.to_thread(sentry_alert, "supervisord program demo:demo is FATAL", "demo")
    await _delivered()
    assert [event["tags"]["program"] for event in sentry.events()] == ["health", "demo"]
