"""Settle sends left unsettled after their jobs ended: the queue's bookkeeping must not be the last word on a message.

A ledger entry still CLAIMED or UNKNOWN long after the settle period (``stuck_after``, well beyond a job's backoff
and deferrals) belongs to a job that ended without resolving it: failed for good after ambiguous provider answers,
or dead-lettered. For SMS the provider is asked (the same reconciliation the dispatcher runs); a message it holds
moves the entry to SENT through the same compare-and-set on the version read. A message the provider does not hold
is left as it is: re-sending needs the job (its text), so the entry stays counted as stuck and its dead-lettered
job as owed, for an operator to replay. Email has no look-up and is left alone likewise.
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from domain.ports import Clock, SendLedger, SmsSender
from domain.values import Channel


@attrs.frozen
class ReconciliationReport:
    settled: int
    still_unsettled: int


@attrs.define
class StuckSendReconciler:
    ledger: SendLedger
    sms: SmsSender
    clock: Clock
    stuck_after: timedelta = timedelta(minutes=15)
    batch: int = 100

    async def run_once(self) -> ReconciliationReport:
        """One pass over at most ``batch`` stuck entries. Raises TransientError when the ledger or the provider
        cannot be asked now (the next pass tries again)."""
        now = self.clock.now()
        settled = 0
        stuck = await self.ledger.unsettled_before(now - self.stuck_after, self.batch)
        for entry in stuck:
            if entry.channel is not Channel.SMS:
                continue
            receipt = await self.sms.find_sent(entry.key, entry.claimed_at)
            if receipt is not None and await self.ledger.mark_sent(
                entry.key, entry.version, receipt.provider_message_id, now
            ):
                settled += 1
        return ReconciliationReport(settled, len(stuck) - settled)
