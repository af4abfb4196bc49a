"""Personalized copies and each org's daily use of the model, in Postgres.

A copy is written once per ledger key (``ON CONFLICT DO NOTHING``, then read back: the first writer's words win).
The budget is one conditional upsert, so concurrent workers never count past an org's allowance.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import attrs

from adapters.postgres.pool import PostgresDatabase
from domain.personalization import CopySource, DailyBudget, FallbackReason, StoredCopy
from domain.values import OrgId

_KEEP = """
    insert into personalized_copies (ledger_key, source, body, subject, html, fallback, created_at)
    values ($1, $2, $3, $4, $5, $6, $7)
    on conflict (ledger_key) do nothing
"""
_GET = "select ledger_key, source, body, subject, html, fallback from personalized_copies where ledger_key = $1"
# One more request when the day's requests and tokens are both under the allowance; no row back otherwise.
_TAKE = """
    insert into personalization_usage as u (org_id, day, requests, tokens) values ($1, $2, 1, 0)
    on conflict (org_id, day) do update set requests = u.requests + 1
     where u.requests < $3 and u.tokens < $4
    returning requests
"""
_SPEND = """
    insert into personalization_usage as u (org_id, day, requests, tokens) values ($1, $2, 0, $3)
    on conflict (org_id, day) do update set tokens = u.tokens + excluded.tokens
"""


def _copy(row: asyncpg.Record) -> StoredCopy:
    fallback = row["fallback"]
    return StoredCopy(
        ledger_key=row["ledger_key"],
        source=CopySource(row["source"]),
        body=row["body"],
        subject=row["subject"],
        html=row["html"],
        fallback=FallbackReason(fallback) if fallback is not None else None,
    )


@attrs.define
class PostgresPersonalizedCopies:
    db: PostgresDatabase

    async def get(self, ledger_key: str) -> StoredCopy | None:
        row = await self.db.fetchrow(_GET, ledger_key)
        return _copy(row) if row else None

    async def keep(self, copy: StoredCopy, at: datetime) -> StoredCopy:
        fallback = copy.fallback.value if copy.fallback is not None else None
        await self.db.execute(
            _KEEP, copy.ledger_key, copy.source.value, copy.body, copy.subject, copy.html, fallback, at
        )
        row = await self.db.fetchrow(_GET, copy.ledger_key)  # a new statement: sees a concurrent first writer
        assert row is not None, "personalized copies are never deleted"
        return _copy(row)


@attrs.define
class PostgresPersonalizationBudgets:
    db: PostgresDatabase

    async def take(self, org_id: OrgId, day: date, budget: DailyBudget) -> bool:
        if budget.requests <= 0 or budget.tokens <= 0:
            return False
        taken = await self.db.fetchval(_TAKE, org_id, day, budget.requests, budget.tokens)
        return taken is not None

    async def spend(self, org_id: OrgId, day: date, tokens: int) -> None:
        await self.db.execute(_SPEND, org_id, day, tokens)
