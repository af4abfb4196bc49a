"""The ``dead-letter`` queue: one copy of every job that failed for the last time, for an operator to replay.

Nothing consumes this queue; the Node tooling (Bull Board, ``Job.fromId``) shows it beside the others. The copy's
id is derived from the source queue and job id, and added in one transaction with an existence check, so two
workers recording the same failure produce one copy. A replay must remove the copy (or the next final failure of
the same job id is not recorded again).

Each recorded failure is also marked in ``<prefix>:cf:dead-lettered`` (copy id -> epoch ms), so the sweeper
(adapters/bullmq/dead_letter_sweep.py) can tell a job whose copy was never made from one whose copy an operator
replayed and removed.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import redis.asyncio as redis_asyncio
from bullmq import Queue

from adapters.bullmq.keys import DEAD_LETTER_QUEUE
from adapters.bullmq.publisher import add_job_once
from adapters.redis_keys import dead_lettered_key
from adapters.redis_topology import QueuePrefixes, as_prefixes


@attrs.frozen
class FailedJob:
    """What the dead-letter copy records about a job's final failure (timestamps in epoch milliseconds)."""

    source_queue: str
    job_name: str
    job_id: str
    data: Any = attrs.field(repr=False)
    failed_reason: str
    attempts_made: int
    attempts_allowed: int
    created_at: int
    processed_on: int | None
    finished_on: int | None
    stalled_counter: int

    def as_data(self) -> dict[str, Any]:
        return {
            "sourceQueue": self.source_queue,
            "jobName": self.job_name,
            "jobId": self.job_id,
            "data": self.data,
            "failedReason": self.failed_reason,
            "attemptsMade": self.attempts_made,
            "attempts": self.attempts_allowed,
            "timestamp": self.created_at,
            "processedOn": self.processed_on,
            "finishedOn": self.finished_on,
            "stalledCounter": self.stalled_counter,
        }


def dead_letter_id(source_queue: str, job_id: str) -> str:
    return f"{source_queue}.{job_id}"


class BullmqDeadLetter:
    def __init__(self, client: redis_asyncio.Redis, prefixes: QueuePrefixes | str) -> None:
        """``prefixes``: the dead-letter queue's and ours (a str: one for both)."""
        prefixes = as_prefixes(prefixes)
        self._client = client
        self._marks = dead_lettered_key(prefixes.home)
        self._queue = Queue(DEAD_LETTER_QUEUE, {"prefix": prefixes.of(DEAD_LETTER_QUEUE), "connection": client})

    def copy_key(self, source_queue: str, job_id: str) -> str:
        """The Redis key of a copy (the bullmq job hash in ``dead-letter``)."""
        key: str = self._queue.toKey(dead_letter_id(source_queue, job_id))
        return key

    async def record(self, failed: FailedJob) -> bool:
        """Copy the failed job into ``dead-letter``; True if this call made the copy, False if it existed."""
        copy_id = dead_letter_id(failed.source_queue, failed.job_id)
        added = await add_job_once(self._queue, failed.job_name, failed.as_data(), {"jobId": copy_id})
        await self.mark(copy_id)
        return added

    async def mark(self, copy_id: str) -> None:
        """Remember that this failure was recorded (kept after a replay removes the copy)."""
        await self._client.zadd(self._marks, {copy_id: int(time.time() * 1000)})
