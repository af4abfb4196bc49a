"""One message handed to a provider (Twilio, SendGrid, the outbox): a CLIENT span, a count by outcome, and two
log lines for forensics (``provider_request`` before, ``provider_answered`` after: ledger key, outcome, code and the
provider's message id only; never the recipient or the text).

The outcome is read from the domain error the sender raises (senders translate library errors first), so every
sender counts the same way: sent, rejected, rate_limited, unknown, unreachable, misconfigured or lapsed (the
send's ledger claim would have lapsed before the request was over: refused unsent, ``ClaimLapsed``), with the
provider's error code when there is one. Labels are bounded: no recipient, no message, no URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import attrs
import structlog

from adapters.observability.metrics import MetricsRecorder
from adapters.observability.tracing import child_span, set_span_attributes
from domain.errors import (
    ClaimLapsed,
    ConfigurationError,
    DeliveryError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    TransientError,
)
from domain.sms import SmsLength

log = structlog.get_logger()


@attrs.define
class ProviderAnswer:
    """What the sender learnt from the provider, filled in inside ``provider_call`` for its log line."""

    provider_message_id: str | None = None


def _outcome(error: BaseException) -> tuple[str, str | None]:
    if isinstance(error, DeliveryRejected):
        return "rejected", error.code
    if isinstance(error, DeliveryRateLimited):
        return "rate_limited", error.code
    if isinstance(error, DeliveryOutcomeUnknown):
        return "unknown", error.code
    if isinstance(error, DeliveryError):
        return "failed", error.code
    if isinstance(error, TransientError):
        return "unreachable", None
    if isinstance(error, ConfigurationError):
        return "misconfigured", None
    if isinstance(error, ClaimLapsed):
        return "lapsed", None
    return "error", None


@contextlib.contextmanager
def provider_call(
    provider: str,
    channel: str,
    recorder: MetricsRecorder | None,
    ledger_key: str | None = None,
    *,
    sms: SmsLength | None = None,
) -> Iterator[ProviderAnswer]:
    """Wrap one send: the span ``<provider> send``, the request and answer log lines and, when ``recorder`` is
    given, the messages-by-outcome count. The caller sets the yielded answer's ``provider_message_id``. For an SMS
    (``sms``: its length, domain/sms.py) the span carries its segments, and an accepted one adds them to the
    segment count."""
    answer = ProviderAnswer()
    log.info("provider_request", provider=provider, channel=channel, ledger_key=ledger_key)
    with child_span(
        f"{provider} send", attributes={"clientflow.provider": provider, "clientflow.channel": channel}
    ) as span:
        try:
            yield answer
        except Exception as error:
            outcome, code = _outcome(error)
            log.info("provider_answered", provider=provider, ledger_key=ledger_key, outcome=outcome, code=code)
            set_span_attributes(span, {"clientflow.outcome": outcome, "clientflow.error_code": code or "none"})
            if recorder is not None:
                recorder.provider_message(provider, channel, outcome, code)
            raise
        log.info(
            "provider_answered",
            provider=provider,
            ledger_key=ledger_key,
            outcome="sent",
            provider_message_id=answer.provider_message_id,
        )
        set_span_attributes(span, {"clientflow.outcome": "sent"})
        if sms is not None:
            set_span_attributes(
                span, {"clientflow.sms.segments": sms.segments, "clientflow.sms.encoding": sms.encoding}
            )
        if recorder is not None:
            recorder.provider_message(provider, channel, "sent", None)
            if sms is not None:
                recorder.sms_segments(provider, sms.encoding, sms.segments)
