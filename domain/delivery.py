"""Send a message at most once: claim it in the ledger, call the provider, record what the provider said.

Every capability sends through ``Dispatcher.deliver``. The rules, in the order they apply:
- the claim and the recipient's suppressions are checked together; a suppressed recipient gets nothing (a message
  sent before the suppression still reports as delivered earlier, so callers do not fall back to another channel);
- an entry already SENT or FAILED is final: nothing is sent again;
- an entry still CLAIMED (someone is mid-send, or died mid-send) or UNKNOWN (the provider may have it) is left
  alone until ``settle`` has passed since it last changed, so no request still in flight can land after ours;
  meanwhile a fresh CLAIMED entry is looked at again after ``recheck`` (its sender usually answers within it, and
  the duplicate then finds SENT cheaply). Then, for SMS, the provider is asked whether the message went out
  (reconciliation) and it is re-sent only when the provider has no record of it AND the entry is still the one
  read (a compare-and-set on its version): of racing jobs exactly one sends again, the others re-read and defer;
  email has no such look-up, so it stays UNKNOWN for an operator to decide;
- every deferral for an unsettled entry gets up to ``jitter`` added at random, so jobs bunched on one instant
  (duplicates, a backlog after downtime) come back spread out;
- since another run may treat an entry unsettled for ``settle`` as abandoned, the sender is handed the claim's
  deadline (its last change + ``settle`` - ``deadline_margin``) and refuses to write a request that could still be
  in flight then (ClaimLapsed: nothing sent; a worker whose loop was blocked past it, say). This run then gives its
  claim back (a compare-and-set: a no-op when another run has moved the entry) and takes the ledger's answer, or
  defers (``claim_lapsed``);
- a rate-limited send releases its claim (the provider certainly did not accept it) and is deferred; a send the
  provider certainly never received (a local failure before the request left, credentials or connection refused:
  the senders raise TransientError or ConfigurationError for these) releases it and raises;
- an ambiguous answer (timeout, reset, 5xx), or any other failure of the sender (the request may have left),
  marks the entry UNKNOWN and raises, so the job's backoff applies.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import attrs

from domain.errors import (
    ClaimLapsed,
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
from domain.outcomes import Deferred, Undeliverable
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
class Unconfirmed:
    """Whether the provider accepted the message cannot be known; it is not sent again."""

    reason: str


DeliveryResult = Delivered | Suppressed | Undeliverable | Deferred | Unconfirmed
"""What ``Dispatcher.deliver`` returns. ``Undeliverable`` and ``Deferred`` are the job outcomes of the same names
(domain/outcomes.py): a capability may return them as they are."""


@attrs.define
class Dispatcher:
    ledger: SendLedger
    sms: SmsSender
    email: EmailSender
    clock: Clock
    settle: timedelta = timedelta(seconds=60)  # above the providers' client timeouts, with margin
    recheck: timedelta = timedelta(seconds=5)
    """When a fresh CLAIMED entry (someone mid-send) is looked at again; at most ``settle``."""
    jitter: timedelta = timedelta(seconds=5)
    """The most added at random to a deferral for an unsettled entry."""
    deadline_margin: timedelta = timedelta(seconds=1)
    """Taken off ``settle`` for the deadline handed to the sender: the clocks of the workers may disagree by this."""
    random: random.Random = attrs.field(factory=random.Random, repr=False)

    async def deliver(self, claim: SendClaim, message: SmsMessage | EmailMessage) -> DeliveryResult:
        """Send ``message`` at most once under ``claim`` (the rules in this module's docstring).

        Returns ``Delivered`` (now, or ``earlier`` by a previous run), ``Suppressed`` (the recipient is withdrawn;
        nothing sent), ``Undeliverable`` (refused for good by the provider, now or earlier; ``suppressed`` when the
        refusal withdrew the address), ``Deferred`` (try again at ``until``: an earlier send still unsettled, or the
        provider's rate limit) or ``Unconfirmed`` (an email whose outcome cannot be known; not sent again).
        Raises ValueError when the message does not match the claim (key or channel); TransientError or
        ConfigurationError when the provider certainly did not get the request (the claim is released; a lapsed
        claim is not an error: the ledger's answer, or ``Deferred`` with reason ``claim_lapsed``);
        DeliveryOutcomeUnknown or any other sender error when it may have (the entry is marked UNKNOWN).
        """
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
        assert result.entry is not None
        ours: LedgerEntry | DeliveryResult = result.entry
        if result.status is ClaimStatus.TAKEN:
            ours = await self._resolve_existing(result.entry, message, now)
        if not isinstance(ours, LedgerEntry):
            return ours
        return await self._send(claim, ours, message)

    async def _resolve_existing(
        self, entry: LedgerEntry, message: SmsMessage | EmailMessage, now: datetime
    ) -> DeliveryResult | LedgerEntry:
        """What an existing entry means for this run: a result, or the entry this run now owns and must send."""
        final = _final(entry)
        if final is not None:
            return final
        settled_at = entry.updated_at + self.settle
        if now < settled_at:
            return Deferred(self._spread(self._next_look(entry, settled_at, now)), "earlier_send_unsettled")
        if isinstance(message, EmailMessage):
            if entry.state is LedgerState.CLAIMED:
                await self.ledger.mark_unknown(entry.key, entry.version, "claim never resolved", now)
            return Unconfirmed("email_outcome_unknown")
        receipt = await self.sms.find_sent(entry.key, entry.claimed_at)
        if receipt is not None:
            await self.ledger.mark_sent(entry.key, entry.version, receipt.provider_message_id, now)
            return Delivered(receipt.provider_message_id, earlier=True)
        reclaimed = await self.ledger.reclaim(entry.key, entry.version, now)
        if reclaimed is not None:
            return reclaimed
        # Another run moved the entry first: it sends (or has settled it). Take its answer if it is there already.
        current = await self.ledger.get(entry.key)
        settled = _final(current) if current is not None else None
        return settled or Deferred(self._spread(now + self.recheck), "ledger_entry_changed")

    def _next_look(self, entry: LedgerEntry, settled_at: datetime, now: datetime) -> datetime:
        """A CLAIMED entry younger than ``recheck`` is looked at again then; anything else once settled."""
        soon = entry.updated_at + self.recheck
        return soon if entry.state is LedgerState.CLAIMED and now < soon < settled_at else settled_at

    def _spread(self, moment: datetime) -> datetime:
        return moment + self.jitter * self.random.random()

    async def _send(self, claim: SendClaim, entry: LedgerEntry, message: SmsMessage | EmailMessage) -> DeliveryResult:
        key, version = claim.key, entry.version
        deadline = entry.updated_at + self.settle - self.deadline_margin
        try:
            receipt: ProviderReceipt = await (
                self.sms.send(message, deadline)
                if isinstance(message, SmsMessage)
                else self.email.send(message, deadline)
            )
        except ClaimLapsed:
            # Nothing left. Another run may own the entry by now: give ours back (a no-op if it moved), take its
            # answer when there is one, else look again soon (a released key is claimed afresh then).
            await self.ledger.release(key, version)
            current = await self.ledger.get(key)
            settled = _final(current) if current is not None else None
            return settled or Deferred(self._spread(self.clock.now() + self.recheck), "claim_lapsed")
        except DeliveryRejected as refused:
            now = self.clock.now()
            await self.ledger.mark_failed(key, version, refused.reason, refused.code, now)
            if refused.suppress is not None:
                await self.ledger.suppress(claim.org_id, claim.channel, claim.recipient, refused.suppress, now)
            return Undeliverable(refused.reason, refused.code, refused.suppress)
        except DeliveryRateLimited as limited:
            await self.ledger.release(key, version)
            return Deferred(limited.retry_at, "provider_rate_limited")
        except (ConfigurationError, TransientError):
            # The provider certainly did not get the request (a local failure, credentials or connection refused).
            await self.ledger.release(key, version)
            raise
        except DeliveryOutcomeUnknown as unknown:
            await self.ledger.mark_unknown(key, version, unknown.reason, self.clock.now())
            raise
        except Exception:
            # Not classified by the sender: the request may have left, so it is treated as an ambiguous answer.
            await self.ledger.mark_unknown(key, version, "sender failed unexpectedly", self.clock.now())
            raise
        # A lost compare-and-set here means the entry was reclaimed while our request was in flight: the sender
        # wrote it before the deadline, so only a request outliving its own time bound gets here; the ledger
        # adapter logs it, and the message did go out under this receipt.
        await self.ledger.mark_sent(key, version, receipt.provider_message_id, self.clock.now())
        return Delivered(receipt.provider_message_id)


def _final(entry: LedgerEntry) -> DeliveryResult | None:
    """The result a SENT or FAILED entry stands for; None while it is unsettled."""
    if entry.state is LedgerState.SENT:
        return Delivered(entry.provider_message_id, earlier=True)
    if entry.state is LedgerState.FAILED:
        return Undeliverable(entry.reason or "refused earlier", None)
    return None
