"""Outgoing messages and what the providers say about them, plus the send ledger's records.

Every message carries its ledger key: the one name of a logical message (reminder 24h of appointment X by SMS)
under which it is claimed once, sent at most once, and reconciled with the provider's delivery events.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from domain.errors import SuppressionReason
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber


@attrs.frozen
class SmsMessage:
    ledger_key: str
    to: PhoneNumber
    body: str = attrs.field(repr=False)


@attrs.frozen
class EmailMessage:
    """``html`` is already escaped by the renderer; ``text`` is the plain alternative."""

    ledger_key: str
    to: EmailAddress
    subject: str = attrs.field(repr=False)
    text: str = attrs.field(repr=False)
    html: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class ProviderReceipt:
    provider_message_id: str


@attrs.frozen
class SendClaim:
    """A request to own the one send of ``key`` to ``recipient`` (whose suppressions are checked with it)."""

    key: str
    org_id: OrgId
    contact_id: ContactId
    channel: Channel
    purpose: MessagePurpose
    recipient: PhoneNumber | EmailAddress


class LedgerState(enum.StrEnum):
    CLAIMED = "claimed"  # claimed, provider not (yet) answered; if it stays so, the sender died mid-send
    SENT = "sent"
    FAILED = "failed"  # permanently refused
    UNKNOWN = "unknown"  # the provider may or may not have accepted it


@attrs.frozen
class LedgerEntry:
    key: str
    channel: Channel
    state: LedgerState
    claimed_at: datetime
    updated_at: datetime
    provider_message_id: str | None = None
    reason: str | None = None
    version: int = 0
    """Changed by every transition and never reused for the key: the compare-and-set token of the next move."""


class ClaimStatus(enum.StrEnum):
    CLAIMED = "claimed"  # ours: send now
    TAKEN = "taken"  # an entry exists already (see ``existing``)
    SUPPRESSED = "suppressed"  # the recipient's address is suppressed (see ``suppression``): nothing claimed


@attrs.frozen
class ClaimResult:
    """``entry`` is ours when CLAIMED, the one found when TAKEN, None when SUPPRESSED."""

    status: ClaimStatus
    entry: LedgerEntry | None = None
    suppression: SuppressionReason | None = None
