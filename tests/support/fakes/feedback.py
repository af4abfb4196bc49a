"""In-memory fake of the delivery-feedback ports (SuppressionList, DeliveryFeedback, UnsettledSends), over the
in-memory send ledger's rows. Passes tests/contract/test_delivery_feedback.py with the Postgres adapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from domain.errors import SuppressionReason
from domain.feedback import ConsentAction, ConsentChange, DeliveryProgress, DeliveryReport, FeedbackApplied
from domain.messages import LedgerEntry, LedgerState
from domain.reconciliation import FAILED_UNCONFIRMED
from domain.values import Channel, EmailAddress, PhoneNumber
from tests.support.fakes.ledger import InMemorySendLedger


def _address(recipient: PhoneNumber | EmailAddress) -> str:
    return recipient.e164 if isinstance(recipient, PhoneNumber) else recipient.address.lower()


@attrs.frozen
class RecordedChange:
    channel: Channel
    address: str
    action: ConsentAction
    reason: SuppressionReason | None
    source: str
    at: datetime


@attrs.define
class _Progress:
    status: DeliveryProgress
    error_code: str | None
    at: datetime


@attrs.define
class InMemoryDeliveryFeedback:
    ledger: InMemorySendLedger
    suppressed: dict[tuple[Channel, str], SuppressionReason] = attrs.Factory(dict)
    changes: list[RecordedChange] = attrs.Factory(list)
    progress_of: dict[str, _Progress] = attrs.Factory(dict)
    _events: set[tuple[str, str]] = attrs.Factory(set)

    async def suppression(self, channel: Channel, recipient: PhoneNumber | EmailAddress) -> SuppressionReason | None:
        return self.suppressed.get((channel, _address(recipient)))

    async def apply(self, reports: Sequence[DeliveryReport], changes: Sequence[ConsentChange]) -> FeedbackApplied:
        moved = {report.ledger_key for report in reports if self._apply_report(report)}
        return FeedbackApplied(len(moved), sum(self._apply_change(change) for change in changes))

    def _apply_report(self, report: DeliveryReport) -> bool:
        row = self.ledger.rows.get(report.ledger_key)
        if row is None or row.entry.channel is not report.channel:
            return False
        entry = row.entry
        settles = entry.state in (LedgerState.CLAIMED, LedgerState.UNKNOWN) or (
            entry.state is LedgerState.FAILED and entry.reason == FAILED_UNCONFIRMED
        )
        if entry.state is LedgerState.FAILED and not settles:
            return False
        if entry.provider_message_id not in (None, report.provider_message_id) and report.provider_message_id:
            return False
        current = self.progress_of.get(report.ledger_key)
        if current is not None and current.status.rank >= report.progress.rank:
            return False
        self.progress_of[report.ledger_key] = _Progress(report.progress, report.error_code, report.at)
        row.entry = attrs.evolve(
            entry,
            state=LedgerState.SENT if settles else entry.state,
            updated_at=report.at if settles else entry.updated_at,
            version=next(self.ledger.versions) if settles else entry.version,
            provider_message_id=entry.provider_message_id or report.provider_message_id,
        )
        return True

    def _apply_change(self, change: ConsentChange) -> int:
        if (change.source, change.event_id) in self._events:
            return 0
        self._events.add((change.source, change.event_id))
        address = _address(change.recipient)
        self.changes.append(
            RecordedChange(change.channel, address, change.action, change.reason, change.source, change.at)
        )
        if change.action is ConsentAction.WITHDRAWN:
            assert change.reason is not None
            self.suppressed.setdefault((change.channel, address), change.reason)
            return 1
        if self.suppressed.get((change.channel, address)) is SuppressionReason.OPTED_OUT:
            del self.suppressed[(change.channel, address)]
        for key, reason in list(self.ledger.suppressions.items()):
            if key[1:] == (change.channel, address) and reason is SuppressionReason.OPTED_OUT:
                del self.ledger.suppressions[key]
        return 1

    async def progress(self, key: str) -> DeliveryProgress | None:
        found = self.progress_of.get(key)
        return found.status if found else None

    def _unsettled(self) -> list[LedgerEntry]:
        states = (LedgerState.CLAIMED, LedgerState.UNKNOWN)
        return [row.entry for row in self.ledger.rows.values() if row.entry.state in states]

    async def unsettled(
        self, updated_before: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> Sequence[LedgerEntry]:
        found = sorted(
            (
                e
                for e in self._unsettled()
                if e.updated_at < updated_before and (after is None or (e.updated_at, e.key) > after)
            ),
            key=lambda e: (e.updated_at, e.key),
        )
        return found[:limit]

    async def give_up(self, entry: LedgerEntry, at: datetime) -> bool:
        row = self.ledger.rows.get(entry.key)
        if row is None or row.entry.state not in (LedgerState.CLAIMED, LedgerState.UNKNOWN):
            return False
        if row.entry.version != entry.version:
            return False
        row.entry = attrs.evolve(
            row.entry,
            state=LedgerState.FAILED,
            reason=FAILED_UNCONFIRMED,
            updated_at=at,
            version=next(self.ledger.versions),
        )
        return True

    async def unsettled_by_age(
        self, now: datetime, ages: Sequence[timedelta]
    ) -> Mapping[tuple[Channel, timedelta], int]:
        entries = self._unsettled()
        return {
            (channel, age): sum(1 for e in entries if e.channel is channel and e.updated_at < now - age)
            for channel in Channel
            for age in ages
        }
