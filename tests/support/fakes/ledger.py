"""The in-memory SendLedger: compare-and-set on ``version``, as the Postgres ledger.

Passes tests/contract/test_send_ledger.py with the Postgres adapter."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import attrs

from domain.errors import SuppressionReason
from domain.messages import ClaimResult, ClaimStatus, LedgerEntry, LedgerState, SendClaim
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber


def _address(recipient: PhoneNumber | EmailAddress) -> str:
    return recipient.e164 if isinstance(recipient, PhoneNumber) else recipient.address.lower()


@attrs.define
class _Row:
    entry: LedgerEntry
    org_id: OrgId
    contact_id: ContactId
    purpose: MessagePurpose


@attrs.define
class InMemorySendLedger:
    """The send ledger in a dict; versions come from one counter, as from the Postgres sequence."""

    rows: dict[str, _Row] = attrs.Factory(dict)
    suppressions: dict[tuple[OrgId, Channel, str], SuppressionReason] = attrs.Factory(dict)
    versions: Iterator[int] = attrs.Factory(lambda: itertools.count(1))

    async def claim(self, claim: SendClaim, at: datetime) -> ClaimResult:
        reason = self.suppressions.get((claim.org_id, claim.channel, _address(claim.recipient)))
        if reason is not None:
            return ClaimResult(ClaimStatus.SUPPRESSED, suppression=reason)
        if claim.key in self.rows:
            return ClaimResult(ClaimStatus.TAKEN, self.rows[claim.key].entry)
        entry = LedgerEntry(claim.key, claim.channel, LedgerState.CLAIMED, at, at, version=next(self.versions))
        self.rows[claim.key] = _Row(entry, claim.org_id, claim.contact_id, claim.purpose)
        return ClaimResult(ClaimStatus.CLAIMED, entry)

    async def get(self, key: str) -> LedgerEntry | None:
        row = self.rows.get(key)
        return row.entry if row else None

    def _move(self, key: str, version: int, allowed: set[LedgerState], **changes: Any) -> LedgerEntry | None:
        row = self.rows.get(key)
        if row is None or row.entry.version != version or row.entry.state not in allowed:
            return None
        row.entry = attrs.evolve(row.entry, version=next(self.versions), **changes)
        return row.entry

    async def mark_sent(self, key: str, version: int, provider_message_id: str, at: datetime) -> bool:
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        changes = {"state": LedgerState.SENT, "provider_message_id": provider_message_id, "updated_at": at}
        return self._move(key, version, unsettled, **changes) is not None

    async def mark_failed(self, key: str, version: int, reason: str, code: str | None, at: datetime) -> bool:
        text = f"{reason} ({code})" if code else reason
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        return self._move(key, version, unsettled, state=LedgerState.FAILED, reason=text, updated_at=at) is not None

    async def mark_unknown(self, key: str, version: int, reason: str, at: datetime) -> bool:
        claimed = {LedgerState.CLAIMED}
        return self._move(key, version, claimed, state=LedgerState.UNKNOWN, reason=reason, updated_at=at) is not None

    async def reclaim(self, key: str, version: int, at: datetime) -> LedgerEntry | None:
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        return self._move(key, version, unsettled, state=LedgerState.CLAIMED, claimed_at=at, updated_at=at)

    async def release(self, key: str, version: int) -> bool:
        row = self.rows.get(key)
        if row is None or row.entry.version != version or row.entry.state is not LedgerState.CLAIMED:
            return False
        del self.rows[key]
        return True

    async def unsettled_before(self, before: datetime, limit: int) -> Sequence[LedgerEntry]:
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        found = [r.entry for r in self.rows.values() if r.entry.state in unsettled and r.entry.updated_at < before]
        return sorted(found, key=lambda entry: entry.updated_at)[:limit]

    async def suppress(
        self,
        org_id: OrgId,
        channel: Channel,
        recipient: PhoneNumber | EmailAddress,
        reason: SuppressionReason,
        at: datetime,
    ) -> None:
        self.suppressions.setdefault((org_id, channel, _address(recipient)), reason)

    async def count_sent_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> int:
        counted = {LedgerState.CLAIMED, LedgerState.SENT, LedgerState.UNKNOWN}
        return sum(
            1
            for r in self.rows.values()
            if r.org_id == org_id
            and r.contact_id == contact_id
            and r.purpose is purpose
            and r.entry.state in counted
            and r.entry.claimed_at >= since
        )

    async def claim_times_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> Sequence[datetime]:
        counted = {LedgerState.CLAIMED, LedgerState.SENT, LedgerState.UNKNOWN}
        return sorted(
            r.entry.claimed_at
            for r in self.rows.values()
            if r.org_id == org_id
            and r.contact_id == contact_id
            and r.purpose is purpose
            and r.entry.state in counted
            and r.entry.claimed_at >= since
        )
