"""Operator control of a queue we consume: counts, pause/resume, and failed jobs back to waiting (bounded).

All through bullmq's own scripts (``Queue.pause``/``resume``, ``Job.retry`` = ``reprocessJob``), so the Node CRM's
tooling sees the same states. A job moved back from ``failed`` gets its attempts anew; its dead-letter copy is
removed (the replay of a copy and the retry of its job are one action, not two), so a new final failure is
copied again.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import redis.asyncio as redis_asyncio
from bullmq import Job as BullJob
from bullmq import Queue

from adapters.bullmq.counts import job_counts
from adapters.bullmq.dead_letter import dead_letter_id
from adapters.bullmq.dead_letter_admin import DeadLetterAdmin
from adapters.bullmq.keys import queue_key
from adapters.redis_topology import QueuePrefixes, as_prefixes


@attrs.frozen
class RetriedJobs:
    """Ids moved from ``failed`` back to waiting; ``skipped`` ids changed state meanwhile (not moved)."""

    moved: Sequence[str]
    skipped: Sequence[str]


class QueueControl:
    """One queue of a deployment (``prefixes``: each queue's and ours; a str: one for all); the caller has checked
    it is one we consume."""

    def __init__(self, client: redis_asyncio.Redis, prefixes: QueuePrefixes | str, queue: str) -> None:
        self._client = client
        self._prefixes = as_prefixes(prefixes)
        self._prefix = self._prefixes.of(queue)
        self._name = queue
        self._queue = Queue(queue, {"prefix": self._prefix, "connection": client})

    async def counts(self) -> dict[str, int]:
        """Jobs per state, with BullMQ's key names (adapters/bullmq/counts.py: ``wait``, ``active``, ``failed`` ...)."""
        return await job_counts(self._client, self._prefix, self._name)

    async def is_paused(self) -> bool:
        paused: bool = await self._queue.isPaused()
        return paused

    async def pause(self) -> None:
        """No worker takes a new job of this queue (running ones finish); producers keep adding."""
        await self._queue.pause()

    async def resume(self) -> None:
        await self._queue.resume()

    async def failed_ids(self, limit: int) -> list[str]:
        """The ``limit`` oldest failed jobs (by when they failed)."""
        raw = await self._client.zrange(queue_key(self._prefix, self._name, "failed"), 0, limit - 1)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in raw]

    async def retry_failed(self, limit: int) -> RetriedJobs:
        """Move up to ``limit`` of the oldest failed jobs back to waiting, attempts reset; remove their copies."""
        moved, skipped = [], []
        dead_letters = DeadLetterAdmin(self._client, self._prefixes)
        for job_id in await self.failed_ids(limit):
            job = await BullJob.fromId(self._queue, job_id)
            try:
                if job is None:
                    raise LookupError(job_id)
                await job.retry("failed", {"resetAttemptsMade": True, "resetAttemptsStarted": True})
            except Exception:  # gone or no longer failed (bullmq raises a plain Exception with its code)
                skipped.append(job_id)
                continue
            moved.append(job_id)
            await dead_letters.remove(dead_letter_id(self._name, job_id))
        return RetriedJobs(moved, skipped)
