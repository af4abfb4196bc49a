"""The dead-letter sweeper: copies failed jobs whose ``dead-letter`` copy was never made.

The runtime copies a job from the ``failed`` event, after bullmq moved it to ``failed``: a crash between the two
(or a job failed by a Node worker) leaves a failure without a copy. Every worker process sweeps its queue's
``failed`` set at start-up and then every few minutes. Every member of that set failed for good (bullmq moves a job
there only when it will not retry it), so no further test is needed: a member is copied unless its failure was
recorded before (the ``dead-lettered`` mark, which outlives a replay that removed the copy) or its copy exists.

The work per sweep is bounded (``batch`` jobs); a cursor over the set's scores (the finish times) moves forward, and a
full batch is followed by the next one soon. Jobs that finished in the last ``settle`` seconds are left to the event
path. Copies are idempotent (deterministic ids), so several workers sweeping the same queue make one copy each.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import redis.asyncio as redis_asyncio
import structlog

from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob, dead_letter_id
from adapters.bullmq.keys import job_key, queue_key
from adapters.periodic import run_periodically
from adapters.redis_keys import dead_lettered_key
from adapters.redis_topology import QueuePrefixes, as_prefixes

log = structlog.get_logger()

_JOB_FIELDS = ("name", "data", "opts", "failedReason", "atm", "timestamp", "processedOn", "finishedOn", "stc")


@attrs.frozen
class SweepReport:
    examined: int
    copied: Sequence[FailedJob]
    caught_up: bool
    """False when the batch was full: more failed jobs wait to be examined."""


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def _json(raw: str | None) -> Any:
    try:
        return json.loads(raw) if raw is not None else None
    except ValueError:
        return raw  # kept as it was stored: the copy is for an operator to read


def _failed_job(queue: str, job_id: str, fields: Sequence[str | None]) -> FailedJob:
    name, data, opts, reason, attempts_made, created, processed, finished, stalled = fields
    options = _json(opts)
    attempts = options.get("attempts") if isinstance(options, dict) else None
    return FailedJob(
        source_queue=queue,
        job_name=name or "",
        job_id=job_id,
        data=_json(data),
        failed_reason=reason or "",
        attempts_made=_int(attempts_made) or 0,
        attempts_allowed=max(attempts, 1) if isinstance(attempts, int) else 1,
        created_at=_int(created) or 0,
        processed_on=_int(processed),
        finished_on=_int(finished),
        stalled_counter=_int(stalled) or 0,
    )


@attrs.define
class DeadLetterSweeper:
    """Sweeps one queue's ``failed`` set; ``on_copied`` hears of each copy this sweeper made (for alerting)."""

    client: redis_asyncio.Redis
    prefixes: QueuePrefixes = attrs.field(converter=as_prefixes)
    """The swept queue's and ours (a str: one for both)."""
    queue: str
    dead_letter: BullmqDeadLetter
    batch: int = 200
    settle_seconds: float = 30.0
    lookback_seconds: float = 24 * 3600.0
    """How far back the first sweep of a process looks (later sweeps continue from where it stopped)."""
    interval_seconds: float = 300.0
    on_copied: Callable[[FailedJob], None] | None = None
    _since_ms: int | None = attrs.field(default=None, init=False)

    def _failed_key(self) -> str:
        return queue_key(self.prefixes.of(self.queue), self.queue, "failed")

    async def sweep(self) -> SweepReport:
        """Examine up to ``batch`` failed jobs after the cursor; copy those never recorded."""
        now_ms = int(time.time() * 1000)
        until_ms = now_ms - int(self.settle_seconds * 1000)
        since_ms = self._since_ms if self._since_ms is not None else now_ms - int(self.lookback_seconds * 1000)
        if until_ms < since_ms:
            return SweepReport(0, (), True)
        entries: list[tuple[str, float]] = await self.client.zrangebyscore(  # type: ignore[assignment]  # withscores
            self._failed_key(), since_ms, until_ms, start=0, num=self.batch, withscores=True
        )
        copied = await self._copy_unrecorded([job_id for job_id, _ in entries])
        caught_up = len(entries) < self.batch
        if caught_up:
            self._since_ms = until_ms
        else:  # the next sweep starts at the last score seen (its ties are examined again, harmlessly)
            last = int(entries[-1][1])
            self._since_ms = last if last > since_ms else last + 1
        await self.client.zremrangebyscore(
            dead_lettered_key(self.prefixes.home), "-inf", now_ms - 2 * int(self.lookback_seconds * 1000)
        )
        return SweepReport(len(entries), copied, caught_up)

    async def _copy_unrecorded(self, job_ids: Sequence[str]) -> list[FailedJob]:
        if not job_ids:
            return []
        marks = dead_lettered_key(self.prefixes.home)
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.zscore(marks, dead_letter_id(self.queue, job_id))
                pipe.exists(self.dead_letter.copy_key(self.queue, job_id))
                pipe.hmget(job_key(self.prefixes.of(self.queue), self.queue, job_id), _JOB_FIELDS)
            replies = await pipe.execute()
        copied: list[FailedJob] = []
        for index, job_id in enumerate(job_ids):
            marked, copy_exists, fields = replies[3 * index : 3 * index + 3]
            if marked is not None or fields[0] is None:  # recorded before, or the job was removed meanwhile
                continue
            if copy_exists:  # copied, but the mark is missing (a crash between the two, or an older copy)
                await self.dead_letter.mark(dead_letter_id(self.queue, job_id))
                continue
            failed = _failed_job(self.queue, job_id, fields)
            if await self.dead_letter.record(failed):
                copied.append(failed)
                log.warning("dead_letter_sweep_copied", queue=self.queue, job_id=job_id)
                if self.on_copied is not None:
                    self.on_copied(failed)
        return copied

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep now, then every ``interval_seconds`` (soon again after a full batch) until ``stop`` is set."""

        async def sweep_once() -> float:
            try:
                report = await self.sweep()
            except Exception as exc:  # Redis down: try again at the next interval
                log.warning("dead_letter_sweep_failed", queue=self.queue, error_type=type(exc).__name__)
                return self.interval_seconds
            return self.interval_seconds if report.caught_up else 0.2

        await run_periodically(sweep_once, self.interval_seconds, stop)
