"""The send ledger under concurrency, on real Postgres: one key, many claimers, one winner."""

from __future__ import annotations

import asyncio

from adapters.postgres import PostgresDatabase, PostgresSendLedger
from domain.messages import ClaimStatus, SendClaim
from domain.values import Channel, ContactId, MessagePurpose, OrgId, PhoneNumber
from tests.contract.data import T0

CLAIMERS = 20


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(integration_database: str) -> None:
    """20 claims of the same key, each on its own pool and connection, started together: one CLAIMED, 19 TAKEN."""
    pools = [await PostgresDatabase.connect(integration_database, max_size=1) for _ in range(CLAIMERS)]
    try:
        claim = SendClaim(
            "reminder:3h:a-race:sms",
            OrgId("org-1"),
            ContactId("c-1"),
            Channel.SMS,
            MessagePurpose.TRANSACTIONAL,
            PhoneNumber("+14155550100"),
        )
        start = asyncio.Event()

        async def claim_when_started(ledger: PostgresSendLedger) -> ClaimStatus:
            await start.wait()
            return (await ledger.claim(claim, T0)).status

        tasks = [asyncio.create_task(claim_when_started(PostgresSendLedger(pool))) for pool in pools]
        start.set()
        statuses = await asyncio.gather(*tasks)
        assert statuses.count(ClaimStatus.CLAIMED) == 1
        assert statuses.count(ClaimStatus.TAKEN) == CLAIMERS - 1
        count = await pools[0].fetchval("select count(*) from send_ledger where key = $1", claim.key)
        assert count == 1
    finally:
        await pools[0].execute("delete from send_ledger where key = 'reminder:3h:a-race:sms'")
        for pool in pools:
            await pool.close()
