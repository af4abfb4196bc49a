"""SMS through Twilio's Messages API with the ``twilio`` library, on its async interface over our own aiohttp transport.

The transport enforces a hard per-request timeout (the library's own async client passes none), can point the
library at another base URL (the local fake in tests), never logs, and turns transport failures and 429s into
private signals before the library sees them, so ``Retry-After`` survives and no URL (account SID, recipient)
reaches an exception message.

The claim's deadline (``SmsSender.send``) is checked in the transport, the last step before the HTTP request starts
(after the rate limiter, the reconciliation record and the library building the request): a request that might not
be over by then (now + ``timeout``) is refused with ClaimLapsed. Between that check and the write aiohttp only takes
a pooled connection or opens one, which the request's total ``timeout`` bounds as well, so a request that does
start is over, answered or abandoned, by the deadline.

A local failure is not an unknown outcome: whatever fails before our transport starts the HTTP request (the rate
limiter, the reconciliation record, the library building the request) is a TransientError (the ledger releases the
claim); only a failure once the request may have left is DeliveryOutcomeUnknown.

Reconciliation: Twilio's message resource does not return the ``StatusCallback`` URL that carries our ledger key,
so before each request the sender records the key's recipient and body digest in Redis (``record_ttl``, default a
week). ``find_sent`` lists the 50 newest messages to that recipient (from our sender) and matches one created since
``since`` (less ``CLOCK_SKEW_MARGIN``) with the same body digest. Limits: a record older than its TTL is forgotten
(then None); an account with Twilio's message-body redaction returns no bodies, so nothing matches; another key's
message with the same body to the same number in that window is taken for this one (the message is then not sent:
at most once still holds).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import attrs
from redis.asyncio import Redis
from redis.exceptions import RedisError
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from adapters.messaging.rate_limit import RedisRateLimiter
from adapters.observability.metrics import MetricsRecorder
from adapters.observability.provider_calls import provider_call
from domain.errors import (
    ClaimLapsed,
    ConfigurationError,
    DeliveryError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    SuppressionReason,
    TransientError,
    refuse_after,
)
from domain.messages import ProviderReceipt, SmsMessage
from domain.ports import Clock
from domain.sms import sms_length

TWILIO_API_BASE_URL = "https://api.twilio.com"
DEFAULT_RATE_LIMIT_BACKOFF = timedelta(seconds=30)
# Twilio's date_created has whole seconds and its own clock; ours may run ahead. A message created this long before
# ``since`` still counts: matching also needs this key's recipient and body digest, so the margin costs little.
CLOCK_SKEW_MARGIN = timedelta(minutes=2)
_RECONCILE_LOOKBACK = 50  # newest messages to one recipient examined; a contact gets far fewer per claim window

# Twilio error codes (https://www.twilio.com/docs/api/errors) -> what the domain does with them.
_REJECTIONS: dict[int, tuple[str, SuppressionReason | None]] = {
    21610: ("recipient has opted out", SuppressionReason.OPTED_OUT),
    21211: ("invalid recipient number", SuppressionReason.INVALID_NUMBER),
    21614: ("recipient number is not a mobile number", SuppressionReason.INVALID_NUMBER),
    21617: ("message body too long", None),
}
_AUTHENTICATION_FAILED = 20003


class _Throttled(Exception):
    def __init__(self, retry_after: str | None, code: str) -> None:
        self.retry_after = retry_after
        self.code = code


class _NoAnswer(Exception):
    """The request may have reached Twilio, but no complete answer came back."""


class _Unreachable(Exception):
    """No connection could be made: Twilio certainly did not get the request."""


@attrs.define
class _RequestProgress:
    """One ``send``'s request: ``left`` is set by the transport once it may have left the process, after checking
    that it can be over (``timeout``) by the claim's ``deadline`` on ``clock``."""

    deadline: datetime
    clock: Clock
    timeout: timedelta
    left: bool = False

    def start(self) -> None:
        refuse_after(self.deadline, self.clock.now(), self.timeout)
        self.left = True


_progress: ContextVar[_RequestProgress | None] = ContextVar("twilio_request_progress", default=None)


class _TwilioTransport(AsyncHttpClient):  # type: ignore[misc]  # the library is untyped
    def __init__(self, base_url: str, timeout: timedelta) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), True, timeout.total_seconds())
        self._base = urlsplit(base_url)
        self._session: aiohttp.ClientSession | None = None

    def _rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(
            (self._base.scheme, self._base.netloc, self._base.path.rstrip("/") + parts.path, parts.query, "")
        )

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # the library's interface passes a per-call timeout
        allow_redirects: bool = False,
    ) -> Response:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        progress = _progress.get()
        if progress is not None:
            progress.start()  # the last step before the request: no await from here to aiohttp's own
        try:
            async with self._session.request(
                method.upper(),
                self._rewrite(uri),
                params=params,  # type: ignore[arg-type]  # the library builds str-valued params
                data=data,
                headers={**(headers or {}), **({"Authorization": aiohttp.encode_basic_auth(*auth)} if auth else {})},
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
                allow_redirects=allow_redirects,
            ) as answer:
                text = await answer.text()
                if answer.status == 429:
                    raise _Throttled(answer.headers.get("Retry-After"), _error_code(text) or "429")
                return Response(answer.status, text, dict(answer.headers))
        except aiohttp.ClientConnectorError as error:
            raise _Unreachable(type(error).__name__) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _NoAnswer(type(error).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_code(text: str) -> str | None:
    try:
        code = json.loads(text).get("code")
    except (ValueError, AttributeError):
        return None
    return str(code) if code is not None else None


def _retry_at(retry_after: str | None, now: datetime) -> datetime:
    """``Retry-After`` as seconds or an HTTP date; a default backoff when absent or unreadable."""
    if retry_after:
        if retry_after.strip().isdigit():
            return now + timedelta(seconds=int(retry_after))
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(when.astimezone(UTC), now)
    return now + DEFAULT_RATE_LIMIT_BACKOFF


def _rest_error(status: int, code: int | None) -> DeliveryError | ConfigurationError:
    """Map a Twilio error answer; the library's message is never used (it quotes the recipient)."""
    if code in _REJECTIONS:
        reason, suppress = _REJECTIONS[code]
        return DeliveryRejected(reason, str(code), suppress)
    if status in (401, 403) or code == _AUTHENTICATION_FAILED:
        return ConfigurationError(f"twilio refused the credentials (HTTP {status}, code {code})")
    if status >= 500:
        return DeliveryOutcomeUnknown(f"twilio answered HTTP {status}", str(code) if code else None)
    return DeliveryRejected(f"twilio refused the message (HTTP {status})", str(code) if code else None)


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@attrs.define
class TwilioSmsSender:
    """``sender`` is a phone number (``+1...``) or a Messaging Service SID (``MG...``)."""

    account_sid: str
    auth_token: str = attrs.field(repr=False)
    sender: str
    redis: Redis
    clock: Clock
    status_callback_url: str | None = None
    rate_limiter: RedisRateLimiter | None = None
    base_url: str = TWILIO_API_BASE_URL
    timeout: timedelta = timedelta(seconds=10)
    record_prefix: str = "clientflow:twilio:sent"
    record_ttl: timedelta = timedelta(days=7)
    recorder: MetricsRecorder | None = None
    """Counts each message by outcome (and each request is a span) when given."""
    _transport: _TwilioTransport = attrs.field(init=False, repr=False)
    _client: Client = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not (self.account_sid and self.auth_token and self.sender):
            raise ConfigurationError("twilio account SID, auth token and sender are all required")
        self._transport = _TwilioTransport(self.base_url, self.timeout)
        # A non-empty environment mapping: the library falls back to os.environ only when it is falsy.
        self._client = Client(
            self.account_sid, self.auth_token, http_client=self._transport, environment={"TWILIO_EDGE": ""}
        )
        # The library imports its API modules on first use (1-5 s of CPU): here, at start-up, rather than inside
        # the first send, where they blocked the event loop (and the lock renewals) after the ledger claim.
        _ = self._client.messages

    async def close(self) -> None:
        await self._transport.close()

    def _sender_arguments(self) -> dict[str, str]:
        if self.sender.startswith("MG"):
            return {"messaging_service_sid": self.sender}
        return {"from_": self.sender}

    def _callback(self, ledger_key: str) -> dict[str, str]:
        if not self.status_callback_url:
            return {}
        separator = "&" if urlsplit(self.status_callback_url).query else "?"
        return {"status_callback": f"{self.status_callback_url}{separator}{urlencode({'ledger_key': ledger_key})}"}

    def _record_key(self, ledger_key: str) -> str:
        return f"{self.record_prefix}:{ledger_key}"

    async def send(self, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
        progress = _RequestProgress(deadline, self.clock, self.timeout)
        token = _progress.set(progress)
        try:
            return await self._send(message, progress)
        except (ClaimLapsed, DeliveryError, ConfigurationError, TransientError):
            raise
        except Exception as error:
            if progress.left:
                raise DeliveryOutcomeUnknown(f"twilio request failed ({type(error).__name__})") from None
            raise TransientError(f"failed before the twilio request left ({type(error).__name__})") from None
        finally:
            _progress.reset(token)

    async def _send(self, message: SmsMessage, progress: _RequestProgress) -> ProviderReceipt:
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire()
        record = json.dumps({"to": message.to.e164, "body_sha256": _digest(message.body)})
        try:
            await self.redis.set(self._record_key(message.ledger_key), record, ex=self.record_ttl)
        except (RedisError, OSError) as error:
            raise TransientError(f"could not record the send for reconciliation ({type(error).__name__})") from None
        refuse_after(progress.deadline, self.clock.now(), progress.timeout)  # early, so a refusal logs no request
        with provider_call("twilio", "sms", self.recorder, message.ledger_key, sms=sms_length(message.body)) as answer:
            created = await self._create(message)
            answer.provider_message_id = str(created.sid)
        return ProviderReceipt(str(created.sid))

    async def _create(self, message: SmsMessage) -> Any:
        """One Messages API request, its failures as domain errors."""
        try:
            return await self._client.messages.create_async(
                to=message.to.e164,
                body=message.body,
                **self._sender_arguments(),
                **self._callback(message.ledger_key),
            )
        except _Throttled as throttled:
            raise DeliveryRateLimited(_retry_at(throttled.retry_after, self.clock.now()), throttled.code) from None
        except _NoAnswer as failure:
            raise DeliveryOutcomeUnknown(f"no complete answer from twilio ({failure})") from None
        except _Unreachable as failure:
            raise TransientError(f"twilio unreachable ({failure})") from None
        except TwilioRestException as error:
            raise _rest_error(error.status, _as_int(error.code)) from None
        except TwilioServiceException as error:
            raise _rest_error(int(error.status), _as_int(error.code)) from None
        except TwilioException as error:
            raise ConfigurationError(f"twilio client refused to send ({type(error).__name__})") from None

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        try:
            raw = await self.redis.get(self._record_key(ledger_key))
        except (RedisError, OSError) as error:
            raise TransientError(f"could not read the send record ({type(error).__name__})") from None
        if raw is None:
            return None  # never handed to Twilio (or forgotten after record_ttl)
        record: dict[str, Any] = json.loads(raw)
        sender = {"from_": self.sender} if not self.sender.startswith("MG") else {}
        try:
            listed = await self._client.messages.list_async(to=record["to"], limit=_RECONCILE_LOOKBACK, **sender)
        except _Throttled:
            raise TransientError("twilio rate limited the reconciliation lookup") from None
        except (_NoAnswer, _Unreachable) as failure:
            raise TransientError(f"twilio did not answer the reconciliation lookup ({failure})") from None
        except TwilioException as error:
            raise TransientError(
                f"twilio refused the reconciliation lookup (HTTP {getattr(error, 'status', '?')})"
            ) from None
        for found in listed:
            created_at = found.date_created
            if created_at is None or created_at < since - CLOCK_SKEW_MARGIN:
                continue
            if self.sender.startswith("MG") and found.messaging_service_sid != self.sender:
                continue
            if found.body is not None and _digest(found.body) == record["body_sha256"]:
                return ProviderReceipt(str(found.sid))
        return None


def _as_int(code: object) -> int | None:
    try:
        return int(str(code))
    except ValueError:
        return None
