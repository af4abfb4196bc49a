"""The send ledger under concurrency, on real Postgres: one key, many actors, one winner, in every state.

Each racer has its own pool (one connection), so the races are real races between database sessions. The
dispatcher races run many iterations through each unsettled state a job can find (none yet, CLAIMED by a sender
that died, UNKNOWN after an ambiguous answer, each with the provider holding the message or not) and count what
reached the (recording) provider.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timedelta
from typing import TypeVar

import attrs
import pytest

from adapters.postgres import PostgresDatabase, PostgresSendLedger
from domain.delivery import Delivered, Dispatcher
from domain.errors import refuse_after
from domain.messages import ClaimStatus, LedgerEntry, LedgerState, ProviderReceipt, SendClaim, SmsMessage
from domain.outcomes import Deferred
from domain.values import Channel, ContactId, MessagePurpose, OrgId, PhoneNumber
from tests.support.builders import T0
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.senders import FakeEmailSender

CLAIMERS = 20
RACERS = 8
ITERATIONS = 25
SETTLE = timedelta(seconds=60)
PHONE = PhoneNumber("+14155550100")
T = TypeVar("T")


def _claim(key: str) -> SendClaim:
    return SendClaim(key, OrgId("org-1"), ContactId("c-1"), Channel.SMS, MessagePurpose.TRANSACTIONAL, PHONE)


@pytest.fixture
async def pools(integration_database: str) -> AsyncIterator[list[PostgresDatabase]]:
    opened = [await PostgresDatabase.connect(integration_database, max_size=1) for _ in range(CLAIMERS)]
    try:
        yield opened
    finally:
        await opened[0].execute("delete from send_ledger where key like 'race:%'")
        for pool in opened:
            await pool.close()


async def _together(calls: list[Awaitable[T]]) -> list[T]:
    """Start every call at the same moment (after one event), return their results in order."""
    start = asyncio.Event()

    async def when_started(call: Awaitable[T]) -> T:
        await start.wait()
        return await call

    tasks = [asyncio.create_task(when_started(call)) for call in calls]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(pools: list[PostgresDatabase]) -> None:
    """20 claims of the same key, each on its own pool and connection, started together: one CLAIMED, 19 TAKEN."""
    claim = _claim("race:claim")
    ledgers = [PostgresSendLedger(pool) for pool in pools]
    results = await _together([ledger.claim(claim, T0) for ledger in ledgers])
    statuses = [result.status for result in results]
    assert statuses.count(ClaimStatus.CLAIMED) == 1
    assert statuses.count(ClaimStatus.TAKEN) == CLAIMERS - 1
    assert await pools[0].fetchval("select count(*) from send_ledger where key = $1", claim.key) == 1


@pytest.mark.parametrize("state", [LedgerState.CLAIMED, LedgerState.UNKNOWN])
async def test_concurrent_reclaims_of_one_read_have_exactly_one_winner(
    pools: list[PostgresDatabase], state: LedgerState
) -> None:
    """20 sessions that read the same unsettled entry all reclaim it: exactly one gets it, many times over."""
    ledgers = [PostgresSendLedger(pool) for pool in pools]
    for iteration in range(ITERATIONS):
        key = f"race:reclaim:{state}:{iteration}"
        read = await _entry_in(ledgers[0], key, state)
        later = T0 + SETTLE
        results = await _together([ledger.reclaim(key, read.version, later) for ledger in ledgers])
        winners = [result for result in results if result is not None]
        assert len(winners) == 1, f"iteration {iteration}: {len(winners)} reclaims of one read succeeded"
        assert await ledgers[0].get(key) == winners[0]


async def _entry_in(ledger: PostgresSendLedger, key: str, state: LedgerState) -> LedgerEntry:
    """A fresh entry of ``key`` in CLAIMED or UNKNOWN, claimed at T0."""
    result = await ledger.claim(_claim(key), T0)
    assert result.entry is not None
    if state is LedgerState.UNKNOWN:
        assert await ledger.mark_unknown(key, result.entry.version, "provider 500", T0)
    entry = await ledger.get(key)
    assert entry is not None
    assert entry.state is state
    return entry


@attrs.define
class RecordingProvider:
    """An SMS provider shared by every racer: records each accepted message per key; answers after a random pause
    so the racers interleave between their look-up and their send."""

    clock: FakeClock
    sent: dict[str, list[str]] = attrs.Factory(dict)
    holds: dict[str, ProviderReceipt] = attrs.Factory(dict)
    rng: random.Random = attrs.Factory(lambda: random.Random(11))

    async def _pause(self) -> None:
        await asyncio.sleep(self.rng.random() * 0.003)

    async def send(self, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
        await self._pause()
        refuse_after(deadline, self.clock.now())
        receipt = ProviderReceipt(f"SM-{message.ledger_key}-{len(self.sent.get(message.ledger_key, []))}")
        self.sent.setdefault(message.ledger_key, []).append(receipt.provider_message_id)
        self.holds[message.ledger_key] = receipt
        return receipt

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        await self._pause()
        return self.holds.get(ledger_key)


async def _prepare(ledger: PostgresSendLedger, provider: RecordingProvider, key: str, start: str) -> None:
    """Leave ``key`` as a job would find it: ``none``, ``claimed``/``unknown`` (the provider has nothing), or
    ``claimed+sent``/``unknown+sent`` (the provider has the message; its answer never reached the ledger)."""
    if start == "none":
        return
    state = LedgerState.UNKNOWN if start.startswith("unknown") else LedgerState.CLAIMED
    await _entry_in(ledger, key, state)
    if start.endswith("+sent"):
        provider.holds[key] = ProviderReceipt(f"SM-{key}-earlier")
        provider.sent[key] = [provider.holds[key].provider_message_id]


@pytest.mark.parametrize("start", ["none", "claimed", "unknown", "claimed+sent", "unknown+sent"])
async def test_racing_jobs_send_one_message_per_key_from_every_state(pools: list[PostgresDatabase], start: str) -> None:
    """8 jobs deliver one key at once (settle passed), 25 times per starting state: the provider ends up with
    exactly one message per key, the ledger says SENT with that message's id, and every job either delivered it or
    was deferred (never a second send)."""
    clock = FakeClock(T0 + SETTLE)
    provider = RecordingProvider(clock)
    dispatchers = [
        Dispatcher(PostgresSendLedger(pool), provider, FakeEmailSender(clock), clock, settle=SETTLE)
        for pool in pools[:RACERS]
    ]
    ledger = PostgresSendLedger(pools[0])
    for iteration in range(ITERATIONS):
        key = f"race:deliver:{start}:{iteration}"
        await _prepare(ledger, provider, key, start)
        message = SmsMessage(key, PHONE, "hello")
        results = await _together([dispatcher.deliver(_claim(key), message) for dispatcher in dispatchers])
        assert len(provider.sent[key]) == 1, f"iteration {iteration}: {len(provider.sent[key])} messages sent"
        assert all(isinstance(result, Delivered | Deferred) for result in results)
        assert sum(1 for result in results if isinstance(result, Delivered) and not result.earlier) == (
            0 if start.endswith("+sent") else 1
        )
        entry = await ledger.get(key)
        assert entry is not None
        assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, provider.sent[key][0])
