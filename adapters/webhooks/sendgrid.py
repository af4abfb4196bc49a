"""SendGrid's Event Webhook: the signed-request check and the batch's events as reports and consent changes.

SendGrid signs ``timestamp + body`` with ECDSA P-256/SHA-256; the base64 signature and the timestamp come in
``X-Twilio-Email-Event-Webhook-Signature`` / ``-Timestamp`` (SendGrid, "Getting started with the Event Webhook
security features"). The ``sendgrid`` library's ``EventWebhook`` verifies it against the account's public key.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs
from sendgrid.helpers.eventwebhook import EventWebhook

from domain.errors import InvalidValue, SuppressionReason
from domain.feedback import (
    SENDGRID_PROGRESS,
    ConsentAction,
    ConsentChange,
    DeliveryReport,
    email_event_suppression,
)
from domain.values import Channel, EmailAddress

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SOURCE = "sendgrid_event"


@attrs.define
class SendGridSignature:
    """``public_key``: the verification key (base64 DER, as SendGrid's settings page shows it); ``max_age_seconds``:
    how far the signed timestamp may be from now, either way."""

    public_key: str
    max_age_seconds: float
    _verifier: EventWebhook = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._verifier = EventWebhook(self.public_key)

    def refusal(self, body: bytes, signature: str | None, timestamp: str | None, now: datetime) -> str | None:
        """None for an authentic, fresh request; else the reason (a short code, never the body)."""
        if not signature or not timestamp:
            return "unsigned"
        try:
            signed_at = float(timestamp)
        except ValueError:
            return "bad_timestamp"
        if abs(now.timestamp() - signed_at) > self.max_age_seconds:
            return "stale_timestamp"
        try:
            valid = self._verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
        except (UnicodeDecodeError, binascii.Error, ValueError):
            return "bad_signature"
        return None if valid else "bad_signature"


@attrs.frozen
class EventBatch:
    """A batch's reports and consent changes; ``kinds`` the event names seen (for metrics), ``unusable`` the
    number of entries that were not events we can read."""

    reports: Sequence[DeliveryReport]
    changes: Sequence[ConsentChange]
    kinds: Sequence[str]
    unusable: int


class MalformedBatch(ValueError):
    """The body is not a JSON array."""


def parse_events(body: bytes, now: datetime) -> EventBatch:
    """Read a batch. Events refer to their message by ``ledger_key`` (our custom arg, echoed at the event's top
    level); the message id is ``sg_message_id`` up to its first dot (the ``X-Message-Id`` the send returned)."""
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBatch("body is not JSON") from None
    if not isinstance(events, list):
        raise MalformedBatch("body is not a JSON array")
    reports: list[DeliveryReport] = []
    changes: list[ConsentChange] = []
    kinds: list[str] = []
    unusable = 0
    for event in events:
        kind = event.get("event") if isinstance(event, dict) else None
        if not isinstance(kind, str):
            unusable += 1
            continue
        kinds.append(kind)
        reports.extend(_report(event, kind, now))
        suppression = email_event_suppression(kind, _text(event, "reason"), _text(event, "type"))
        if suppression is not None:
            change = _change(event, suppression, now)
            if change is None:
                unusable += 1
            else:
                changes.append(change)
    return EventBatch(reports, changes, kinds, unusable)


def _text(event: dict[str, Any], name: str) -> str | None:
    value = event.get(name)
    return value if isinstance(value, str) and value else None


def _report(event: dict[str, Any], kind: str, now: datetime) -> list[DeliveryReport]:
    progress = SENDGRID_PROGRESS.get(kind)
    ledger_key = _text(event, "ledger_key")
    if progress is None or ledger_key is None:
        return []
    message_id = _text(event, "sg_message_id")
    return [DeliveryReport(ledger_key, Channel.EMAIL, progress, now, message_id.split(".")[0] if message_id else None)]


def _change(event: dict[str, Any], reason: SuppressionReason, now: datetime) -> ConsentChange | None:
    """The withdrawal an event asks for; None when it lacks its address or event id (it cannot be applied once)."""
    event_id, address = _text(event, "sg_event_id"), _text(event, "email")
    if event_id is None or address is None:
        return None
    try:
        recipient = EmailAddress(address)
    except InvalidValue:
        return None
    return ConsentChange(Channel.EMAIL, recipient, ConsentAction.WITHDRAWN, SOURCE, event_id, now, reason)
