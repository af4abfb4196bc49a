"""The send ledger and suppressions in Postgres: what was sent is recorded here, not in Redis.

A claim is ``INSERT ... ON CONFLICT DO NOTHING`` in the same transaction as the suppression check, so of
concurrent claims of one key exactly one inserts. Every later move is one conditional UPDATE (or DELETE) that
names the states it may leave, which makes the state machine of the port hold under concurrency too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import attrs

from adapters.postgres.pool import PostgresDatabase
from domain.errors import SuppressionReason, TransientError
from domain.messages import ClaimResult, ClaimStatus, LedgerEntry, LedgerState, SendClaim
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber


def suppression_address(recipient: PhoneNumber | EmailAddress) -> str:
    """How an address is keyed in ``suppressions``: E.164 for phones, lower case for email."""
    return recipient.e164 if isinstance(recipient, PhoneNumber) else recipient.address.lower()


def _entry(row: asyncpg.Record) -> LedgerEntry:
    return LedgerEntry(
        key=row["key"],
        channel=Channel(row["channel"]),
        state=LedgerState(row["state"]),
        claimed_at=row["claimed_at"],
        updated_at=row["updated_at"],
        provider_message_id=row["provider_message_id"],
        reason=row["reason"],
    )


@attrs.define
class PostgresSendLedger:
    db: PostgresDatabase

    async def claim(self, claim: SendClaim, at: datetime) -> ClaimResult:
        async with self.db.transaction() as connection:
            suppressed = await connection.fetchval(
                "select reason from suppressions where org_id = $1 and channel = $2 and address = $3",
                claim.org_id,
                claim.channel.value,
                suppression_address(claim.recipient),
            )
            if suppressed is not None:
                return ClaimResult(ClaimStatus.SUPPRESSED, suppression=SuppressionReason(suppressed))
            # A loser of the race waits here for the winner's commit, then sees the conflict. If the winner
            # released its entry meanwhile, the key is free again: try once more.
            for _ in range(3):
                inserted = await connection.fetchval(
                    "insert into send_ledger (key, org_id, contact_id, channel, purpose, state, claimed_at, updated_at)"
                    " values ($1, $2, $3, $4, $5, 'claimed', $6, $6) on conflict (key) do nothing returning true",
                    claim.key,
                    claim.org_id,
                    claim.contact_id,
                    claim.channel.value,
                    claim.purpose.value,
                    at,
                )
                if inserted:
                    return ClaimResult(ClaimStatus.CLAIMED)
                existing = await connection.fetchrow(
                    "select key, channel, state, claimed_at, updated_at, provider_message_id, reason"
                    " from send_ledger where key = $1",
                    claim.key,
                )
                if existing is not None:
                    return ClaimResult(ClaimStatus.TAKEN, existing=_entry(existing))
        raise TransientError("send ledger key was claimed and released repeatedly during one claim")

    async def get(self, key: str) -> LedgerEntry | None:
        row = await self.db.fetchrow(
            "select key, channel, state, claimed_at, updated_at, provider_message_id, reason"
            " from send_ledger where key = $1",
            key,
        )
        return _entry(row) if row else None

    async def mark_sent(self, key: str, provider_message_id: str, at: datetime) -> None:
        await self.db.execute(
            "update send_ledger set state = 'sent', provider_message_id = $2, updated_at = $3"
            " where key = $1 and state in ('claimed', 'unknown')",
            key,
            provider_message_id,
            at,
        )

    async def mark_failed(self, key: str, reason: str, code: str | None, at: datetime) -> None:
        await self.db.execute(
            "update send_ledger set state = 'failed', reason = $2, updated_at = $3"
            " where key = $1 and state in ('claimed', 'unknown')",
            key,
            f"{reason} ({code})" if code else reason,
            at,
        )

    async def mark_unknown(self, key: str, reason: str, at: datetime) -> None:
        await self.db.execute(
            "update send_ledger set state = 'unknown', reason = $2, updated_at = $3"
            " where key = $1 and state = 'claimed'",
            key,
            reason,
            at,
        )

    async def reclaim(self, key: str, at: datetime) -> bool:
        moved = await self.db.fetchval(
            "update send_ledger set state = 'claimed', claimed_at = $2, updated_at = $2"
            " where key = $1 and state in ('claimed', 'unknown') returning true",
            key,
            at,
        )
        return bool(moved)

    async def release(self, key: str) -> None:
        await self.db.execute("delete from send_ledger where key = $1 and state = 'claimed'", key)

    async def suppress(
        self,
        org_id: OrgId,
        channel: Channel,
        recipient: PhoneNumber | EmailAddress,
        reason: SuppressionReason,
        at: datetime,
    ) -> None:
        await self.db.execute(
            "insert into suppressions (org_id, channel, address, reason, created_at) values ($1, $2, $3, $4, $5)"
            " on conflict (org_id, channel, address) do nothing",
            org_id,
            channel.value,
            suppression_address(recipient),
            reason.value,
            at,
        )

    async def count_sent_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> int:
        count: int = await self.db.fetchval(
            "select count(*) from send_ledger where org_id = $1 and contact_id = $2 and purpose = $3"
            " and state in ('claimed', 'sent', 'unknown') and claimed_at >= $4",
            org_id,
            contact_id,
            purpose.value,
            since,
        )
        return count

    async def claim_times_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> Sequence[datetime]:
        found = await self.db.fetch(
            "select claimed_at from send_ledger where org_id = $1 and contact_id = $2 and purpose = $3"
            " and state in ('claimed', 'sent', 'unknown') and claimed_at >= $4 order by claimed_at",
            org_id,
            contact_id,
            purpose.value,
            since,
        )
        return [row["claimed_at"] for row in found]
