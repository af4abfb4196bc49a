"""Personalized copies and budgets under races on real Postgres: one key's words are one, an allowance is never passed.

Each racer runs on its own pool (its own connection), as separate worker processes would.
"""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from adapters.postgres import PostgresDatabase
from adapters.postgres.personalization import PostgresPersonalizationBudgets, PostgresPersonalizedCopies
from domain.copy_personalization import CopyPersonalization
from domain.errors import InvalidValue
from domain.messages import SmsMessage
from domain.models import Organization, Template
from domain.personalization import DailyBudget, PersonalizedCopy
from domain.values import Channel, OrgId, PhoneNumber, zone
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.personalization import FakeCopyPersonalizer, RecordingPersonalizationRecorder

RACERS = 6
ROUNDS = 15
ORG = Organization(OrgId("org-race"), "Acme", zone("America/New_York"), "USD")
TEMPLATE = Template(ORG.id, "tips", Channel.SMS, "Hi Dana", None, "warmer")


async def test_racing_workers_send_one_set_of_words_per_ledger_key(integration_database: str) -> None:
    """Six workers personalize the same send at once, each model answering differently: all six hand the
    dispatcher the same words (the first stored), round after round."""
    pools = [await PostgresDatabase.connect(integration_database, max_size=1) for _ in range(RACERS)]
    try:
        for round_number in range(ROUNDS):
            message = SmsMessage(f"nurture:race-{round_number}:1:sms", PhoneNumber("+14155550100"), "Hi Dana")
            racers = [
                CopyPersonalization(
                    FakeCopyPersonalizer(script=[PersonalizedCopy(f"Dana! (racer {n})", None, "m", 1, 1)]),
                    PostgresPersonalizedCopies(pool),
                    PostgresPersonalizationBudgets(pool),
                    RecordingPersonalizationRecorder(),
                    FakeClock(),
                    DailyBudget(1000, 1_000_000),
                )
                for n, pool in enumerate(pools)
            ]
            start = asyncio.Event()

            async def race(racer: CopyPersonalization, sms: SmsMessage = message, go: asyncio.Event = start) -> str:
                await go.wait()
                chosen = await racer.copy_for(ORG, TEMPLATE, sms, {}, claimed_before=False)
                assert isinstance(chosen, SmsMessage)
                return chosen.body

            tasks = [asyncio.create_task(race(racer)) for racer in racers]
            start.set()
            sent = await asyncio.gather(*tasks)
            assert len(set(sent)) == 1, sent
            stored = await pools[0].fetchval(
                "select body from personalized_copies where ledger_key = $1", message.ledger_key
            )
            assert sent[0] == stored
    finally:
        await pools[0].execute("delete from personalized_copies where ledger_key like 'nurture:race-%'")
        await pools[0].execute("delete from personalization_usage where org_id = 'org-race'")
        for pool in pools:
            await pool.close()


async def test_racing_takes_never_pass_the_allowance(integration_database: str) -> None:
    """Twenty concurrent takes against an allowance of seven requests: exactly seven succeed, round after round."""
    pools = [await PostgresDatabase.connect(integration_database, max_size=1) for _ in range(20)]
    try:
        for round_number in range(ROUNDS):
            day = date(2026, 1, 1 + round_number)
            start = asyncio.Event()

            async def take(budgets: PostgresPersonalizationBudgets, on: date = day, go: asyncio.Event = start) -> bool:
                await go.wait()
                return await budgets.take(ORG.id, on, DailyBudget(requests=7, tokens=10_000))

            tasks = [asyncio.create_task(take(PostgresPersonalizationBudgets(pool))) for pool in pools]
            start.set()
            assert sum(await asyncio.gather(*tasks)) == 7
    finally:
        await pools[0].execute("delete from personalization_usage where org_id = 'org-race'")
        for pool in pools:
            await pool.close()


@pytest.mark.parametrize("literals", [["Reply {{ stop }} to opt out"], ["fine", None]], ids=["placeholder", "null"])
async def test_a_required_literal_must_be_plain_text(db: PostgresDatabase, literals: list[str | None]) -> None:
    """The schema refuses a required literal holding a placeholder, or a null one."""
    await db.execute("insert into organizations (id, name, time_zone, currency) values ('org-l', 'x', 'UTC', 'USD')")
    with pytest.raises(InvalidValue, match="ai_required_literals"):
        await db.execute(
            "insert into message_templates (org_id, name, channel, body, ai_instruction, ai_required_literals)"
            " values ('org-l', 't', 'sms', 'Hi', 'warmer', $1)",
            literals,
        )
