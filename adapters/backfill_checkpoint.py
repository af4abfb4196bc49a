"""Where a snapshot backfill remembers the days it finished, so an interrupted run resumes without recomputing them.

One Redis set per backfill (``<prefix>:cf:backfill:<id>``; members ``<org id>|<YYYY-MM-DD>``), where the id is
derived from what was asked (orgs, first and last day): running the same command again finds it. It expires a
week after its last write and is deleted when the backfill completes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date

import redis.asyncio as redis_asyncio

from adapters.redis_keys import backfill_key

CHECKPOINT_TTL_S = 7 * 86400


def backfill_id(org_ids: Sequence[str], first: date, last: date) -> str:
    """The same request, the same id: sorted orgs and the two days, hashed (org ids never appear in the key)."""
    request = "\n".join([*sorted(org_ids), first.isoformat(), last.isoformat()])
    return hashlib.sha256(request.encode()).hexdigest()[:16]


class BackfillCheckpoint:
    def __init__(self, client: redis_asyncio.Redis, prefix: str, backfill: str) -> None:
        self._client = client
        self._key = backfill_key(prefix, backfill)

    @staticmethod
    def _member(org_id: str, day: date) -> str:
        return f"{org_id}|{day.isoformat()}"

    async def done(self) -> set[tuple[str, date]]:
        """The (org, day) pairs an earlier run of this backfill finished."""
        members = await self._client.smembers(self._key)
        found = set()
        for member in members:
            org_id, _, day = (member.decode() if isinstance(member, bytes) else str(member)).rpartition("|")
            found.add((org_id, date.fromisoformat(day)))
        return found

    async def mark(self, org_id: str, day: date) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._key, self._member(org_id, day))
            pipe.expire(self._key, CHECKPOINT_TTL_S)
            await pipe.execute()

    async def forget(self) -> None:
        await self._client.delete(self._key)
