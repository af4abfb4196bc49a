"""The dry run's database on real Postgres: the send ledger's real claims inside it are seen by later jobs of the
same run, undone for a job that fails, and never committed; a claim committed outside is seen (TAKEN)."""

from __future__ import annotations

import pytest

from adapters.postgres import PostgresDatabase, PostgresSendLedger
from adapters.postgres.dry_run import DryRunDatabase, rolled_back_database
from domain.messages import ClaimStatus, SendClaim
from domain.values import Channel, ContactId, MessagePurpose, OrgId, PhoneNumber
from tests.support.builders import T0


def claim(key: str) -> SendClaim:
    return SendClaim(
        key, OrgId("org-1"), ContactId("c-1"), Channel.SMS, MessagePurpose.TRANSACTIONAL, PhoneNumber("+14155550100")
    )


async def failing_job(dry: DryRunDatabase, ledger: PostgresSendLedger) -> None:
    async with dry.job_savepoint():
        await ledger.claim(claim("k-failing"), T0)
        raise RuntimeError("the job failed")


async def test_claims_in_a_dry_run_are_seen_within_it_and_never_committed(
    db: PostgresDatabase, integration_database: str
) -> None:
    """A claim of job 1 makes job 2's claim of the same key TAKEN; a failing job's claim is undone at once; after
    the run the ledger is as before, while a claim made outside the run is seen inside it."""
    await PostgresSendLedger(db).claim(claim("sent-before"), T0)

    async with rolled_back_database(integration_database) as dry:
        ledger = PostgresSendLedger(dry.database)
        async with dry.job_savepoint():
            first = (await ledger.claim(claim("k-1"), T0)).status
        async with dry.job_savepoint():
            second = (await ledger.claim(claim("k-1"), T0)).status
        with pytest.raises(RuntimeError):
            await failing_job(dry, ledger)
        async with dry.job_savepoint():
            after_failure = (await ledger.claim(claim("k-failing"), T0)).status
            outside = (await ledger.claim(claim("sent-before"), T0)).status

    assert (first, second, after_failure, outside) == (
        ClaimStatus.CLAIMED,
        ClaimStatus.TAKEN,
        ClaimStatus.CLAIMED,
        ClaimStatus.TAKEN,
    )
    keys = [row["key"] for row in await db.fetch("select key from send_ledger order by key")]
    assert keys == ["sent-before"]
