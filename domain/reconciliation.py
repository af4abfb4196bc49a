"""Reconciliation of unsettled sends: an entry still CLAIMED or UNKNOWN after the settle period is settled from what
the provider knows, or given up as ``failed_unconfirmed`` after the horizon (counted, alerted, never re-sent).

SMS: Twilio's message look-up (``SmsSender.find_sent``) settles it to SENT when Twilio has it; when Twilio has no
record, the job's own retry may still send it (the dispatcher's rule), so only the horizon gives it up. Email has no
look-up: the Event Webhook settles it (``DeliveryFeedback``); with no event by the horizon it is given up.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from domain.errors import TransientError
from domain.feedback import DeliveryProgress, DeliveryReport
from domain.messages import LedgerEntry
from domain.ports import Clock, DeliveryFeedback, SmsSender, UnsettledSends
from domain.values import Channel

FAILED_UNCONFIRMED = "failed_unconfirmed"


@attrs.frozen
class ReconciliationReport:
    """One pass: entries settled from the provider, given up, and left for later (counts)."""

    settled: int = 0
    given_up: int = 0
    left: int = 0
    lookups_failed: int = 0


@attrs.define
class UnknownSendReconciler:
    """``settle``: how long an entry is left alone after its last change (above the providers' timeouts);
    ``horizon``: how long after its claim an entry is given up; ``batch``: entries per pass."""

    sends: UnsettledSends
    feedback: DeliveryFeedback
    sms: SmsSender
    clock: Clock
    settle: timedelta = timedelta(seconds=60)
    horizon: timedelta = timedelta(hours=24)
    batch: int = 500

    _cursor: tuple[datetime, str] | None = attrs.field(default=None, init=False)

    async def run_once(self) -> ReconciliationReport:
        """Look at the next ``batch`` unsettled entries (each pass continues where the last ended, starting over
        after the newest, so every entry is visited however many wait); TransientError from the store propagates."""
        now = self.clock.now()
        settled = given_up = left = lookups_failed = 0
        entries = await self.sends.unsettled(now - self.settle, self.batch, self._cursor)
        self._cursor = (entries[-1].updated_at, entries[-1].key) if len(entries) == self.batch else None
        for entry in entries:
            if entry.channel is Channel.SMS:
                try:
                    if await self._settle_sms(entry):
                        settled += 1
                        continue
                except TransientError:
                    lookups_failed += 1
            if now - entry.claimed_at >= self.horizon and await self.sends.give_up(entry, now):
                given_up += 1
            else:
                left += 1
        return ReconciliationReport(settled, given_up, left, lookups_failed)

    async def _settle_sms(self, entry: LedgerEntry) -> bool:
        receipt = await self.sms.find_sent(entry.key, entry.claimed_at)
        if receipt is None:
            return False
        report = DeliveryReport(
            entry.key, Channel.SMS, DeliveryProgress.ACCEPTED, self.clock.now(), receipt.provider_message_id
        )
        applied = await self.feedback.apply([report], [])
        return applied.reports > 0
