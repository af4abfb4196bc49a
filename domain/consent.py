"""The consent gate: every send path claims through the ledger, so the ledger's claim is where a withdrawn
address is refused, before anything is written or sent.

A STOP or a bounce lands in the address-wide ``SuppressionList`` (shared by every org); the ledger keeps its own
per-org suppressions (refusals learnt at send time). ``ConsentGatedLedger`` checks the first before the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from domain.errors import SuppressionReason
from domain.messages import ClaimResult, ClaimStatus, LedgerEntry, SendClaim
from domain.ports import SendLedger, SuppressionList
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber


@attrs.define
class ConsentGatedLedger:
    """A ``SendLedger`` whose ``claim`` answers SUPPRESSED for an address on the suppression list (nothing is
    written); every other method is the inner ledger's."""

    inner: SendLedger
    suppressions: SuppressionList

    async def claim(self, claim: SendClaim, at: datetime) -> ClaimResult:
        withdrawn = await self.suppressions.suppression(claim.channel, claim.recipient)
        if withdrawn is not None:
            return ClaimResult(ClaimStatus.SUPPRESSED, suppression=withdrawn)
        return await self.inner.claim(claim, at)

    async def get(self, key: str) -> LedgerEntry | None:
        return await self.inner.get(key)

    async def mark_sent(self, key: str, version: int, provider_message_id: str, at: datetime) -> bool:
        return await self.inner.mark_sent(key, version, provider_message_id, at)

    async def mark_failed(self, key: str, version: int, reason: str, code: str | None, at: datetime) -> bool:
        return await self.inner.mark_failed(key, version, reason, code, at)

    async def mark_unknown(self, key: str, version: int, reason: str, at: datetime) -> bool:
        return await self.inner.mark_unknown(key, version, reason, at)

    async def reclaim(self, key: str, version: int, at: datetime) -> LedgerEntry | None:
        return await self.inner.reclaim(key, version, at)

    async def release(self, key: str, version: int) -> bool:
        return await self.inner.release(key, version)

    async def unsettled_before(self, before: datetime, limit: int) -> Sequence[LedgerEntry]:
        return await self.inner.unsettled_before(before, limit)

    async def suppress(
        self,
        org_id: OrgId,
        channel: Channel,
        recipient: PhoneNumber | EmailAddress,
        reason: SuppressionReason,
        at: datetime,
    ) -> None:
        await self.inner.suppress(org_id, channel, recipient, reason, at)

    async def count_sent_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> int:
        return await self.inner.count_sent_since(org_id, contact_id, purpose, since)

    async def claim_times_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> Sequence[datetime]:
        return await self.inner.claim_times_since(org_id, contact_id, purpose, since)
