"""Sentry: one event per job that fails for the last time, and alerts; scrubbed by our redaction rules.

The SDK sends from its own background thread, so capturing never waits on the network. Log records never become
Sentry events (a retried attempt logs an error but must not page anyone); only the two functions below report.
Without ``init_sentry`` (no DSN) both are no-ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber

from adapters.observability.redaction import redact, redact_text

if TYPE_CHECKING:
    from sentry_sdk._types import Event

# The SDK compares lower-cased keys exactly: list both spellings of each name.
EXTRA_DENYLIST = [
    "auth_token", "authtoken", "access_token", "accesstoken", "refresh_token", "api_key", "apikey", "x-api-key",
    "payment_link", "paymentlink", "phone", "phone_number", "phonenumber", "mobile", "email", "email_address",
    "emailaddress", "address", "to", "from", "name", "first_name", "firstname", "last_name", "lastname",
    "full_name", "fullname", "body", "message", "text", "html", "subject", "personalization", "personalizations",
    "key", "dsn", "database_url", "redis_password", "twilio_auth_token", "sendgrid_api_key", "openai_api_key",
    "sentry_dsn",
]  # fmt: skip
_OUR_CONTEXT = "job"


def _scrub_exception_values(event: dict[str, Any]) -> None:
    for value in (event.get("exception") or {}).get("values") or []:
        if isinstance(value.get("value"), str):
            value["value"] = redact_text(value["value"])


def _scrub_message(event: dict[str, Any]) -> None:
    if isinstance(event.get("message"), str):
        event["message"] = redact_text(event["message"])
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        for field in ("message", "formatted"):
            if isinstance(logentry.get(field), str):
                logentry[field] = redact_text(logentry[field])
        if "params" in logentry:
            logentry["params"] = redact(logentry["params"])


# Command lines and raw HTTP requests (the SDK's stdlib integration records both) can carry a name, an address or an
# account id that no pattern catches: they are dropped, not masked.
_DROPPED_BREADCRUMB_CATEGORIES = frozenset({"subprocess", "httplib"})


def scrub_breadcrumb(crumb: dict[str, Any], _hint: object = None) -> dict[str, Any] | None:
    """Drop command-line and HTTP breadcrumbs; mask the message and redact the data of the others."""
    if crumb.get("category") in _DROPPED_BREADCRUMB_CATEGORIES:
        return None
    if isinstance(crumb.get("message"), str):
        crumb["message"] = redact_text(crumb["message"])
    if isinstance(crumb.get("data"), Mapping):
        crumb["data"] = redact(crumb["data"])
    return crumb


def scrub_event(sdk_event: Event, _hint: dict[str, Any]) -> Event:
    """``before_send``: our redaction over what the SDK's scrubber does not look into (free text, tags, ours)."""
    event = cast(dict[str, Any], sdk_event)
    _scrub_exception_values(event)
    _scrub_message(event)
    breadcrumbs = event.get("breadcrumbs")
    crumbs = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else breadcrumbs
    if isinstance(crumbs, list):
        kept = [scrub_breadcrumb(crumb) for crumb in crumbs if isinstance(crumb, dict)]
        crumbs[:] = [crumb for crumb in kept if crumb is not None]
    for field in ("extra", "tags"):
        if isinstance(event.get(field), Mapping):
            event[field] = redact(event[field])
    contexts = event.get("contexts")
    if isinstance(contexts, dict) and isinstance(contexts.get(_OUR_CONTEXT), Mapping):
        contexts[_OUR_CONTEXT] = redact(contexts[_OUR_CONTEXT])
    event.pop("user", None)
    event.pop("request", None)
    return sdk_event


def init_sentry(
    dsn: str,
    environment: str,
    release: str | None,
    *,
    shutdown_timeout: float = 2.0,
    server_name: str | None = None,
) -> None:
    """Start the SDK for this process. Call once, early, in each process main (worker, scheduler)."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        server_name=server_name,
        # send_default_pii left unset means off (setting it is deprecated); the newer data_collection option
        # would disable the event scrubber, so it is not used.
        include_local_variables=False,
        event_scrubber=EventScrubber(
            denylist=DEFAULT_DENYLIST + EXTRA_DENYLIST, recursive=True, pii_denylist=list(DEFAULT_PII_DENYLIST)
        ),
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        # Log records are neither events nor breadcrumbs: a structlog record's message is the raw event dict.
        integrations=[LoggingIntegration(level=None, event_level=None)],
        auto_enabling_integrations=False,
        traces_sample_rate=None,
        shutdown_timeout=shutdown_timeout,
    )


def flush_sentry(timeout: float = 2.0) -> None:
    """Send what is queued, waiting at most ``timeout`` seconds; the SDK stays open for later events."""
    sentry_sdk.flush(timeout=timeout)


def close_sentry(timeout: float = 2.0) -> None:
    """Send what is queued (waiting at most ``timeout`` seconds) and stop the SDK; call on shutdown."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=timeout)


def report_final_failure(
    queue: str, job_name: str, job_id: str | None, attempt: int, org_id: str | None, exc: BaseException
) -> str | None:
    """Report a job that failed for the last time (attempts exhausted, invalid job, stalled too often).

    Call exactly once per such job, never for an attempt that will be retried. Returns the Sentry event id
    (None when Sentry is off or the event was dropped).
    """
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("queue", queue)
        scope.set_tag("job_name", job_name)
        scope.set_tag("attempt", str(attempt))
        if org_id is not None:
            scope.set_tag("org_id", org_id)
        scope.set_context(_OUR_CONTEXT, {"queue": queue, "job_name": job_name, "job_id": job_id, "attempt": attempt})
        scope.fingerprint = ["{{ default }}", queue, job_name]
        return sentry_sdk.capture_exception(exc)


def report_alert(message: str, **tags: str) -> str | None:
    """Report an operational alert (a supervised process gave up, a configuration error) as one error event."""
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        return sentry_sdk.capture_message(redact_text(message), level="error")
