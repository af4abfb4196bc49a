"""The send ledger and suppressions in Postgres: what was sent is recorded here, not in Redis.

A claim is ``INSERT ... ON CONFLICT DO NOTHING`` in the same transaction as the suppression check, so of
concurrent claims of one key exactly one inserts. Every later move is one conditional UPDATE (or DELETE) that
names the states it may leave and the version the caller read, and draws a new version from one sequence
(migration 0003), so of concurrent movers exactly one wins, even across a release and a new claim of the key.
A move that finds the entry changed is logged (``ledger_entry_changed``) with the key and versions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import attrs
import structlog

from adapters.postgres.pool import PostgresDatabase
from domain.errors import SuppressionReason, TransientError
from domain.messages import ClaimResult, ClaimStatus, LedgerEntry, LedgerState, SendClaim
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber

log = structlog.get_logger()

_SELECT_ENTRY = (
    "select key, channel, state, claimed_at, updated_at, provider_message_id, reason, version"
    " from send_ledger where key = $1"
)


def suppression_address(recipient: PhoneNumber | EmailAddress) -> str:
    """How an address is keyed in ``suppressions``: E.164 for phones, lower case for email."""
    return recipient.e164 if isinstance(recipient, PhoneNumber) else recipient.address.lower()


def ledger_entry(row: asyncpg.Record) -> LedgerEntry:
    """A ``send_ledger`` row (key, channel, state, claimed_at, updated_at, provider_message_id, reason, version)
    as the domain's entry."""
    return LedgerEntry(
        key=row["key"],
        channel=Channel(row["channel"]),
        state=LedgerState(row["state"]),
        claimed_at=row["claimed_at"],
        updated_at=row["updated_at"],
        provider_message_id=row["provider_message_id"],
        reason=row["reason"],
        version=row["version"],
    )


def _moved(transition: str, key: str, version: int, moved: object) -> bool:
    if not moved:
        log.info("ledger_entry_changed", transition=transition, ledger_key=key, read_version=version)
    return bool(moved)


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
                inserted = await connection.fetchrow(
                    "insert into send_ledger (key, org_id, contact_id, channel, purpose, state, claimed_at, updated_at)"
                    " values ($1, $2, $3, $4, $5, 'claimed', $6, $6) on conflict (key) do nothing"
                    " returning key, channel, state, claimed_at, updated_at, provider_message_id, reason, version",
                    claim.key,
                    claim.org_id,
                    claim.contact_id,
                    claim.channel.value,
                    claim.purpose.value,
                    at,
                )
                if inserted is not None:
                    entry = ledger_entry(inserted)
                    log.info("ledger_claimed", ledger_key=claim.key, version=entry.version)
                    return ClaimResult(ClaimStatus.CLAIMED, entry)
                existing = await connection.fetchrow(_SELECT_ENTRY, claim.key)
                if existing is not None:
                    entry = ledger_entry(existing)
                    log.info("ledger_taken", ledger_key=claim.key, state=entry.state.value, version=entry.version)
                    return ClaimResult(ClaimStatus.TAKEN, entry)
        raise TransientError("send ledger key was claimed and released repeatedly during one claim")

    async def get(self, key: str) -> LedgerEntry | None:
        row = await self.db.fetchrow(_SELECT_ENTRY, key)
        return ledger_entry(row) if row else None

    async def mark_sent(self, key: str, version: int, provider_message_id: str, at: datetime) -> bool:
        moved = await self.db.fetchval(
            "update send_ledger set state = 'sent', provider_message_id = $3, updated_at = $4,"
            " version = nextval('send_ledger_version')"
            " where key = $1 and version = $2 and state in ('claimed', 'unknown') returning true",
            key,
            version,
            provider_message_id,
            at,
        )
        return _moved("sent", key, version, moved)

    async def mark_failed(self, key: str, version: int, reason: str, code: str | None, at: datetime) -> bool:
        moved = await self.db.fetchval(
            "update send_ledger set state = 'failed', reason = $3, updated_at = $4,"
            " version = nextval('send_ledger_version')"
            " where key = $1 and version = $2 and state in ('claimed', 'unknown') returning true",
            key,
            version,
            f"{reason} ({code})" if code else reason,
            at,
        )
        return _moved("failed", key, version, moved)

    async def mark_unknown(self, key: str, version: int, reason: str, at: datetime) -> bool:
        moved = await self.db.fetchval(
            "update send_ledger set state = 'unknown', reason = $3, updated_at = $4,"
            " version = nextval('send_ledger_version')"
            " where key = $1 and version = $2 and state = 'claimed' returning true",
            key,
            version,
            reason,
            at,
        )
        return _moved("unknown", key, version, moved)

    async def reclaim(self, key: str, version: int, at: datetime) -> LedgerEntry | None:
        row = await self.db.fetchrow(
            "update send_ledger set state = 'claimed', claimed_at = $3, updated_at = $3,"
            " version = nextval('send_ledger_version')"
            " where key = $1 and version = $2 and state in ('claimed', 'unknown')"
            " returning key, channel, state, claimed_at, updated_at, provider_message_id, reason, version",
            key,
            version,
            at,
        )
        if row is None:
            _moved("reclaimed", key, version, None)
            return None
        entry = ledger_entry(row)
        log.info("ledger_reclaimed", ledger_key=key, read_version=version, version=entry.version)
        return entry

    async def release(self, key: str, version: int) -> bool:
        moved = await self.db.fetchval(
            "delete from send_ledger where key = $1 and version = $2 and state = 'claimed' returning true",
            key,
            version,
        )
        return _moved("released", key, version, moved)

    async def unsettled_before(self, before: datetime, limit: int) -> Sequence[LedgerEntry]:
        rows = await self.db.fetch(
            "select key, channel, state, claimed_at, updated_at, provider_message_id, reason, version"
            " from send_ledger where state in ('claimed', 'unknown') and updated_at < $1"
            " order by updated_at limit $2",
            before,
            limit,
        )
        return [ledger_entry(row) for row in rows]

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
