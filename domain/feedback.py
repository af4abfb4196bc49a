"""Delivery feedback: what the providers report after a send, and what a contact's reply means.

Statuses arrive late, out of order and more than once, so ``DeliveryProgress`` ranks them and the ledger only
moves forward. Keywords follow Twilio's default opt-out handling (Twilio, "Support for opt-out keywords (SMS STOP
filtering)"): one word, any case, surrounding spaces ignored; "STOP PLEASE" is no keyword.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import attrs

from domain.errors import SuppressionReason
from domain.values import Channel, EmailAddress, PhoneNumber


class DeliveryProgress(enum.StrEnum):
    """How far a message got after the provider took it. ``rank`` orders them; the three final ones tie."""

    ACCEPTED = "accepted"  # the provider holds it (Twilio queued/sending, SendGrid processed/deferred)
    SENT = "sent"  # handed to the carrier (Twilio sent)
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # the carrier or mailbox refused it (Twilio undelivered, SendGrid bounce)
    FAILED = "failed"  # the provider never sent it (Twilio failed/canceled, SendGrid dropped)

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    DeliveryProgress.ACCEPTED: 1,
    DeliveryProgress.SENT: 2,
    DeliveryProgress.DELIVERED: 3,
    DeliveryProgress.UNDELIVERED: 3,
    DeliveryProgress.FAILED: 3,
}

# Twilio's MessageStatus values (Twilio, "Message resource: status values"); receiving/received are inbound only.
TWILIO_STATUSES: Mapping[str, DeliveryProgress] = {
    "accepted": DeliveryProgress.ACCEPTED,
    "scheduled": DeliveryProgress.ACCEPTED,
    "queued": DeliveryProgress.ACCEPTED,
    "sending": DeliveryProgress.ACCEPTED,
    "sent": DeliveryProgress.SENT,
    "delivered": DeliveryProgress.DELIVERED,
    "read": DeliveryProgress.DELIVERED,
    "undelivered": DeliveryProgress.UNDELIVERED,
    "failed": DeliveryProgress.FAILED,
    "canceled": DeliveryProgress.FAILED,
}

# SendGrid Event Webhook delivery events (SendGrid, "Event Webhook reference"); engagement events move nothing.
SENDGRID_PROGRESS: Mapping[str, DeliveryProgress] = {
    "processed": DeliveryProgress.ACCEPTED,
    "deferred": DeliveryProgress.ACCEPTED,
    "delivered": DeliveryProgress.DELIVERED,
    "bounce": DeliveryProgress.UNDELIVERED,
    "dropped": DeliveryProgress.FAILED,
}

# A dropped event's ``reason`` that means the address itself is unusable (SendGrid, "Drop reasons").
_DROP_SUPPRESSIONS: Mapping[str, SuppressionReason] = {
    "invalid": SuppressionReason.BOUNCED,
    "bounced address": SuppressionReason.BOUNCED,
    "spam reporting address": SuppressionReason.SPAM_REPORTED,
    "unsubscribed address": SuppressionReason.OPTED_OUT,
}


def email_event_suppression(event: str, reason: str | None, bounce_type: str | None) -> SuppressionReason | None:
    """Whether a SendGrid event withdraws the address from email, and why.

    ``bounce`` suppresses unless its ``type`` is ``blocked`` (a temporary block, not a bad address); ``dropped``
    only for the drop reasons above; ``spamreport`` and ``unsubscribe`` always; ``group_unsubscribe`` never
    (it leaves one unsubscribe group, not all email).
    """
    if event == "bounce":
        return None if (bounce_type or "").lower() == "blocked" else SuppressionReason.BOUNCED
    if event == "dropped":
        return _DROP_SUPPRESSIONS.get((reason or "").strip().lower())
    if event == "spamreport":
        return SuppressionReason.SPAM_REPORTED
    if event == "unsubscribe":
        return SuppressionReason.OPTED_OUT
    return None


@attrs.frozen
class DeliveryReport:
    """A provider's word on one message, matched to its ledger entry by ``ledger_key``."""

    ledger_key: str
    channel: Channel
    progress: DeliveryProgress
    at: datetime
    provider_message_id: str | None = None
    error_code: str | None = None


class SmsKeyword(enum.StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


# Twilio's default keyword lists (Twilio, "Support for opt-out keywords (SMS STOP filtering)"; REVOKE and OPTOUT
# since the FCC's 2025 revocation rule).
_KEYWORDS: Mapping[str, SmsKeyword] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), SmsKeyword.STOP),
    **dict.fromkeys(("START", "YES", "UNSTOP"), SmsKeyword.START),
    **dict.fromkeys(("HELP", "INFO"), SmsKeyword.HELP),
}


def sms_keyword(body: str, opt_out_type: str | None = None) -> SmsKeyword | None:
    """The keyword an inbound SMS is, if any. ``opt_out_type`` is Twilio's own verdict (``OptOutType``, sent when
    Advanced Opt-Out is on, with the service's custom keywords) and wins over the default list."""
    if opt_out_type:
        verdict = opt_out_type.strip().lower()
        if verdict in SmsKeyword.__members__.values():
            return SmsKeyword(verdict)
    return _KEYWORDS.get(body.strip().upper())


class ConsentAction(enum.StrEnum):
    WITHDRAWN = "withdrawn"
    RESTORED = "restored"


@attrs.frozen
class ConsentChange:
    """A recipient withdrew (STOP, bounce, spam report) or restored (START) consent on a channel, for every org.

    ``source`` names where it came from (``twilio_inbound``, ``sendgrid_event``); ``event_id`` the provider's id of
    the event, so a redelivered event changes nothing. Restoring lifts only an opt-out, never a bounce.
    """

    channel: Channel
    recipient: PhoneNumber | EmailAddress
    action: ConsentAction
    source: str
    event_id: str
    at: datetime
    reason: SuppressionReason | None = None


@attrs.frozen
class FeedbackApplied:
    """How many reports moved a ledger entry and how many consent changes were new."""

    reports: int
    consent_changes: int
