"""Contracts of the personalized-copy store and the daily budgets, on the in-memory fakes and on Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

from domain.personalization import CopySource, DailyBudget, FallbackReason, StoredCopy
from domain.values import OrgId
from tests.support.backends import Backend

AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
DAY = date(2026, 1, 15)
ORG = OrgId("org-1")
MODEL_COPY = StoredCopy("nurture:enr-1:2:email", CopySource.MODEL, "Dear Dana", "Welcome back", "<p>Dear Dana</p>")


async def test_a_kept_copy_comes_back_as_stored(backend: Backend) -> None:
    """Both kinds of copy (the model's, the template's with its reason) round-trip under their ledger key."""
    fallback = StoredCopy("nurture:enr-1:3:sms", CopySource.TEMPLATE, "Hi", None, None, FallbackReason.LINK_ADDED)
    assert await backend.copies.keep(MODEL_COPY, AT) == MODEL_COPY
    assert await backend.copies.keep(fallback, AT) == fallback
    assert await backend.copies.get(MODEL_COPY.ledger_key) == MODEL_COPY
    assert await backend.copies.get(fallback.ledger_key) == fallback
    assert await backend.copies.get("nurture:enr-1:4:sms") is None


async def test_the_first_copy_kept_for_a_key_wins(backend: Backend) -> None:
    """A second copy for the same ledger key changes nothing and gets the first one back, even concurrently."""
    others = [StoredCopy(MODEL_COPY.ledger_key, CopySource.MODEL, f"Answer {n}", "S", None) for n in range(8)]
    kept = await asyncio.gather(*(backend.copies.keep(copy, AT) for copy in others))
    assert len(set(kept)) == 1
    assert kept[0] in others
    assert await backend.copies.keep(MODEL_COPY, AT) == kept[0]


async def test_take_counts_requests_up_to_the_allowance(backend: Backend) -> None:
    """Of concurrent takes exactly ``requests`` succeed; another org and another day have their own count."""
    budget = DailyBudget(requests=3, tokens=1000)
    taken = await asyncio.gather(*(backend.budgets.take(ORG, DAY, budget) for _ in range(7)))
    assert sum(taken) == 3
    assert await backend.budgets.take(OrgId("org-2"), DAY, budget)
    assert await backend.budgets.take(ORG, date(2026, 1, 16), budget)


async def test_spent_tokens_close_the_day_at_the_token_allowance(backend: Backend) -> None:
    """Once the day's tokens reach the allowance no request is taken, whatever requests remain."""
    budget = DailyBudget(requests=100, tokens=500)
    assert await backend.budgets.take(ORG, DAY, budget)
    await backend.budgets.spend(ORG, DAY, 499)
    assert await backend.budgets.take(ORG, DAY, budget)
    await backend.budgets.spend(ORG, DAY, 1)
    assert not await backend.budgets.take(ORG, DAY, budget)


async def test_a_zero_allowance_takes_nothing(backend: Backend) -> None:
    """An allowance of zero requests or zero tokens refuses every request."""
    assert not await backend.budgets.take(ORG, DAY, DailyBudget(requests=0, tokens=1000))
    assert not await backend.budgets.take(ORG, DAY, DailyBudget(requests=5, tokens=0))
