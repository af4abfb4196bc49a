"""Send a message at most once: claim it in the ledger, call the provider, record what the provider said.

Every capability sends through ``Dispatcher.deliver``. The rules, in the order they apply:
- the claim and the recipient's suppressions are checked together; a suppressed recipient gets nothing (a message
  sent before the suppression still reports as delivered earlier, so callers do not fall back to another channel);
- an entry already SENT or FAILED is final: nothing is sent again;
- an entry still CLAIMED (someone is mid-send, or died mid-send) or UNKNOWN (the provider may have it) is left
  alone until ``settle`` has passed since it last changed, so no request still in flight can land after ours;
  then, for SMS, the provider is asked whether the message went out (reconciliation) and it is re-sent only when
  the provider has no record of it; email has no such look-up, so it stays UNKNOWN for an operator to decide;
- a rate-limited send releases its claim (the provider certainly did not accept it) and is postponed; a send the
  provider certainly never received (credentials or connection refused) releases it and raises;
- an ambiguous answer (timeout, reset, 5xx) marks the entry UNKNOWN and raises, so the job's backoff applies.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from domain.errors import (
    ConfigurationError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    SuppressionReason,
    TransientError,
)
from domain.messages import (
    ClaimStatus,
    EmailMessage,
    LedgerEntry,
    LedgerState,
    ProviderReceipt,
    SendClaim,
    SmsMessage,
)
from domain.ports import Clock, EmailSender, SendLedger, SmsSender
from domain.values import Channel


@attrs.frozen
class Delivered:
    """The provider has the message; ``earlier`` when a previous run had already sent it."""

    provider_message_id: str | None
    earlier: bool = False


@attrs.frozen
class Suppressed:
    reason: SuppressionReason


@attrs.frozen
class Rejected:
    reason: str
    code: str | None
    suppressed: SuppressionReason | None = None


@attrs.frozen
class Postponed:
    until: datetime
    reason: str


@attrs.frozen
class Unconfirmed:
    """Whether the provider accepted the message cannot be known; it is not sent again."""

    reason: str


DeliveryResult = Delivered | Suppressed | Rejected | Postponed | Unconfirmed


@attrs.define
class Dispatcher:
    ledger: SendLedger
    sms: SmsSender
    email: EmailSender
    clock: Clock
    settle: timedelta = timedelta(seconds=60)  # above the providers' client timeouts, with margin

    async def deliver(self, claim: SendClaim, message: SmsMessage | EmailMessage) -> DeliveryResult:
        if claim.key != message.ledger_key:
            raise ValueError("the message must carry the claim's ledger key")
        if (claim.channel is Channel.SMS) != isinstance(message, SmsMessage):
            raise ValueError("the message type must match the claim's channel")
        now = self.clock.now()
        result = await self.ledger.claim(claim, now)
        if result.status is ClaimStatus.SUPPRESSED:
            assert result.suppression is not None
            earlier_entry = await self.ledger.get(claim.key)
            if earlier_entry is not None and earlier_entry.state is LedgerState.SENT:
                return Delivered(earlier_entry.provider_message_id, earlier=True)
            return Suppressed(result.suppression)
        if result.status is ClaimStatus.TAKEN:
            assert result.existing is not None
            earlier = await self._resolve_existing(result.existing, message, now)
            if earlier is not None:
                return earlier
        return await self._send(claim, message)

    async def _resolve_existing(
        self, entry: LedgerEntry, message: SmsMessage | EmailMessage, now: datetime
    ) -> DeliveryResult | None:
        """What an existing entry means for this run; None when the message must be sent (again) now."""
        if entry.state is LedgerState.SENT:
            return Delivered(entry.provider_message_id, earlier=True)
        if entry.state is LedgerState.FAILED:
            return Rejected(entry.reason or "refused earlier", None)
        settled_at = entry.updated_at + self.settle
        if now < settled_at:
            return Postponed(settled_at, "earlier_send_unsettled")
        if isinstance(message, EmailMessage):
            if entry.state is LedgerState.CLAIMED:
                await self.ledger.mark_unknown(entry.key, "claim never resolved", now)
            return Unconfirmed("email_outcome_unknown")
        receipt = await self.sms.find_sent(entry.key, entry.claimed_at)
        if receipt is not None:
            await self.ledger.mark_sent(entry.key, receipt.provider_message_id, now)
            return Delivered(receipt.provider_message_id, earlier=True)
        if not await self.ledger.reclaim(entry.key, now):
            return Postponed(now + self.settle, "ledger_entry_changed")
        return None

    async def _send(self, claim: SendClaim, message: SmsMessage | EmailMessage) -> DeliveryResult:
        try:
            receipt: ProviderReceipt = await (
                self.sms.send(message) if isinstance(message, SmsMessage) else self.email.send(message)
            )
        except DeliveryRejected as refused:
            now = self.clock.now()
            await self.ledger.mark_failed(claim.key, refused.reason, refused.code, now)
            if refused.suppress is not None:
                await self.ledger.suppress(claim.org_id, claim.channel, claim.recipient, refused.suppress, now)
            return Rejected(refused.reason, refused.code, refused.suppress)
        except DeliveryRateLimited as limited:
            await self.ledger.release(claim.key)
            return Postponed(limited.retry_at, "provider_rate_limited")
        except (ConfigurationError, TransientError):
            # The provider certainly did not get the request (credentials refused, connection refused).
            await self.ledger.release(claim.key)
            raise
        except DeliveryOutcomeUnknown as unknown:
            await self.ledger.mark_unknown(claim.key, unknown.reason, self.clock.now())
            raise
        await self.ledger.mark_sent(claim.key, receipt.provider_message_id, self.clock.now())
        return Delivered(receipt.provider_message_id)
