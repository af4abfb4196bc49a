"""Email through SendGrid's v3 Mail Send API with the ``sendgrid`` library (synchronous urllib: always in a thread).

The ledger key travels in ``custom_args`` so SendGrid's event webhook can be matched to the ledger. Error answers
are mapped by status; the API's own error text is kept for 400s once every address, number and URL is cut out.

The claim's deadline (``EmailSender.send``) is checked in the request's thread, immediately before the library
builds and writes the request (after the rate limit and the wait for a thread): a request that might not be over by
then (now + ``timeout``) is refused with ClaimLapsed. No await lies between the check and the write; what remains is
urllib's own: ``timeout`` bounds each socket operation (connect, each read), not the whole request, so a server
trickling its answer can hold the request past the deadline.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import URLError

import attrs
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, From, Mail, To

from adapters.messaging.rate_limit import RedisRateLimiter
from adapters.observability.metrics import MetricsRecorder
from adapters.observability.provider_calls import provider_call
from domain.errors import (
    ConfigurationError,
    DeliveryError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    TransientError,
    refuse_after,
)
from domain.messages import EmailMessage, ProviderReceipt
from domain.ports import Clock
from domain.values import EmailAddress

SENDGRID_API_HOST = "https://api.sendgrid.com"
DEFAULT_RATE_LIMIT_BACKOFF = timedelta(seconds=60)
_MAX_REASON_LENGTH = 300

_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S+", re.IGNORECASE)
_ADDRESS = re.compile(r"[^\s@<>()\[\]\"',;:]+@[^\s@<>()\[\]\"',;:]+")
_NUMBER = re.compile(r"\+?\d[\d\s().-]{5,}\d")


def scrub(text: str) -> str:
    """The text with every URL, email address and phone-like digit run replaced by a placeholder."""
    text = _URL.sub("<url>", text)
    text = _ADDRESS.sub("<address>", text)
    return _NUMBER.sub("<number>", text)


def _api_error_text(body: bytes | str | None) -> str:
    try:
        errors = json.loads(body or b"").get("errors") or []
        parts = [
            f"{error.get('field')}: {error.get('message')}" if error.get("field") else str(error.get("message"))
            for error in errors
            if isinstance(error, dict)
        ]
    except (ValueError, AttributeError):
        return "unreadable error body"
    return scrub("; ".join(parts))[:_MAX_REASON_LENGTH] or "no error text"


def _reset_at(reset: str | None, now: datetime) -> datetime:
    """``X-RateLimit-Reset`` is a Unix timestamp in seconds; a default backoff when absent or unreadable."""
    try:
        return max(datetime.fromtimestamp(int(reset or ""), UTC), now)
    except (ValueError, OverflowError, OSError):
        return now + DEFAULT_RATE_LIMIT_BACKOFF


def _http_error(error: HTTPError, now: datetime) -> DeliveryError | ConfigurationError:
    status = int(error.status_code)
    if status in (401, 403):
        return ConfigurationError(f"sendgrid refused the API key (HTTP {status})")
    if status == 429:
        return DeliveryRateLimited(_reset_at(error.headers.get("X-RateLimit-Reset"), now), "429")
    if status == 413:
        return DeliveryRejected("sendgrid refused the email as too large", "413")
    if status >= 500:
        return DeliveryOutcomeUnknown(f"sendgrid answered HTTP {status}", str(status))
    return DeliveryRejected(f"sendgrid refused the email: {_api_error_text(error.body)}", str(status))


def _transport_error(error: OSError | http.client.HTTPException) -> DeliveryError | TransientError:
    reason = error.reason if isinstance(error, URLError) else error
    if isinstance(reason, ConnectionRefusedError | socket.gaierror):
        return TransientError(f"sendgrid unreachable ({type(reason).__name__})")
    return DeliveryOutcomeUnknown(f"no complete answer from sendgrid ({type(reason).__name__})")


@attrs.define
class SendGridEmailSender:
    """``from_email`` must be a sender address verified in the SendGrid account."""

    api_key: str = attrs.field(repr=False)
    from_email: EmailAddress
    clock: Clock
    from_name: str | None = None
    rate_limiter: RedisRateLimiter | None = None
    host: str = SENDGRID_API_HOST
    timeout: timedelta = timedelta(seconds=10)
    recorder: MetricsRecorder | None = None
    """Counts each message by outcome (and each request is a span) when given."""
    _client: SendGridAPIClient = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.api_key:
            raise ConfigurationError("sendgrid API key is required")
        self._client = SendGridAPIClient(api_key=self.api_key, host=self.host)
        self._client.client.timeout = self.timeout.total_seconds()  # python_http_client's default is none

    def _mail(self, message: EmailMessage) -> dict[str, Any]:
        mail = Mail(
            from_email=From(self.from_email.address, self.from_name),
            to_emails=To(message.to.address),
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
        )
        mail.custom_arg = CustomArg("ledger_key", message.ledger_key)
        payload: dict[str, Any] = mail.get()
        return payload

    def _post(self, payload: dict[str, Any], deadline: datetime) -> str | None:
        refuse_after(deadline, self.clock.now(), self.timeout)  # the last step before the request is written
        response = self._client.send(payload)
        message_id = response.headers.get("X-Message-Id")
        return str(message_id) if message_id else None

    async def send(self, message: EmailMessage, deadline: datetime) -> ProviderReceipt:
        payload = await self._before_request(message)
        refuse_after(deadline, self.clock.now(), self.timeout)  # early, so a refusal logs no request
        with provider_call("sendgrid", "email", self.recorder, message.ledger_key) as answer:
            try:
                message_id = await asyncio.to_thread(self._post, payload, deadline)
            except HTTPError as error:
                raise _http_error(error, self.clock.now()) from None
            except (OSError, http.client.HTTPException) as error:
                raise _transport_error(error) from None
            if message_id is None:
                raise DeliveryOutcomeUnknown("sendgrid accepted without a message id")
            answer.provider_message_id = message_id
        return ProviderReceipt(message_id)

    async def _before_request(self, message: EmailMessage) -> dict[str, Any]:
        """The rate limit and the request body; a local failure here is a TransientError (nothing left)."""
        try:
            if self.rate_limiter is not None:
                await self.rate_limiter.acquire()
            return self._mail(message)
        except (DeliveryError, TransientError, ConfigurationError):
            raise
        except Exception as error:
            raise TransientError(f"failed before the sendgrid request left ({type(error).__name__})") from None
