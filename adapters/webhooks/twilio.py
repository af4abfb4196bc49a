"""Twilio's webhook requests: the signature check and what a status callback or an inbound SMS means.

Twilio signs each request with HMAC-SHA1 of the URL it called plus the sorted form parameters, keyed by the account's
auth token (``X-Twilio-Signature``; Twilio, "Webhooks security"). The URL is the operator's public one: behind an
HTTPS proxy, the address we listen on is not what Twilio signed.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime

import attrs
from multidict import MultiDictProxy
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from domain.errors import InvalidValue, SuppressionReason
from domain.feedback import TWILIO_STATUSES, ConsentAction, ConsentChange, DeliveryReport, SmsKeyword, sms_keyword
from domain.values import Channel, PhoneNumber

SOURCE = "twilio_inbound"
# An empty answer: Twilio's own opt-out reply (or the Messaging Service's) is the only one the contact gets.
EMPTY_TWIML = str(MessagingResponse())


@attrs.frozen
class Ignored:
    """An authentic request that changes nothing; ``reason`` is a short code for logs and metrics."""

    reason: str


@attrs.define
class TwilioWebhooks:
    """The signature check for one account: the validator and the public URL's base are built once."""

    auth_token: str = attrs.field(repr=False)
    public_url: str
    _validator: RequestValidator = attrs.field(init=False, repr=False)
    _base: str = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._validator = RequestValidator(self.auth_token)
        self._base = self.public_url.rstrip("/")

    def authentic(self, raw_path: str, form: MultiDictProxy[str], signature: str | None) -> bool:
        """Whether ``X-Twilio-Signature`` matches the public URL of this path (query included) and the form.

        First the library's signature of the URL exactly as configured (one HMAC, compared in constant time): what
        Twilio sends for the URL we gave it. Otherwise the library's full check, which also accepts the URL with
        the default port added or removed (two more HMACs, and URL parsing): a refusal costs that, a callback not.
        """
        if not signature:
            return False
        url = self._base + raw_path
        expected = self._validator.compute_signature(url, form)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
        return bool(self._validator.validate(url, form, signature))


def status_report(query: Mapping[str, str], form: Mapping[str, str], now: datetime) -> DeliveryReport | Ignored:
    """A status callback (``MessageSid``, ``MessageStatus``, ``ErrorCode``; our ``ledger_key`` in the query) as a
    report, or why it is ignored."""
    ledger_key = query.get("ledger_key", "").strip()
    if not ledger_key:
        return Ignored("no_ledger_key")
    progress = TWILIO_STATUSES.get(form.get("MessageStatus", "").strip().lower())
    if progress is None:
        return Ignored("unknown_status")
    sid = form.get("MessageSid") or form.get("SmsSid") or None
    return DeliveryReport(ledger_key, Channel.SMS, progress, now, sid, form.get("ErrorCode") or None)


def inbound_change(form: Mapping[str, str], now: datetime) -> ConsentChange | Ignored:
    """An inbound SMS as a consent change (STOP withdraws, START restores), or why it changes nothing."""
    keyword = sms_keyword(form.get("Body", ""), form.get("OptOutType"))
    if keyword is None:
        return Ignored("not_a_keyword")
    if keyword is SmsKeyword.HELP:
        return Ignored("help")
    sid = form.get("MessageSid") or form.get("SmsSid")
    if not sid:
        return Ignored("no_message_sid")
    try:
        sender = PhoneNumber.parse(form.get("From", ""))
    except InvalidValue:
        return Ignored("sender_not_e164")
    if keyword is SmsKeyword.STOP:
        return ConsentChange(
            Channel.SMS, sender, ConsentAction.WITHDRAWN, SOURCE, sid, now, SuppressionReason.OPTED_OUT
        )
    return ConsentChange(Channel.SMS, sender, ConsentAction.RESTORED, SOURCE, sid, now)
