"""Queue maintenance, run by the ``maintain-queues`` schedule: keeps Redis from growing without bound.

Per queue we consume, with BullMQ's own ``clean`` (the ``cleanJobsInSet`` script, oldest first, bounded batches):
completed and failed jobs older than their maximum age, then the oldest beyond the maximum count. This catches
jobs the Node CRM added without ``removeOnComplete``/``removeOnFail``. Then dead letters beyond their retention,
and our own keys' leftovers: failure marks (``cf:dead-lettered``) older than the dead-letter retention, and
heartbeat index entries whose worker is gone.

Only the ``completed`` and ``failed`` sets are ever cleaned: waiting, active, delayed, prioritized and paused jobs
are never touched (the script is only called with those two set names). A failed job is copied to the dead letters
when it fails (the sweeper catches a missed copy within minutes), so none younger than ``FAILED_KEPT_AT_LEAST_S``
is cleaned, not even by the count limit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs
import redis.asyncio as redis_asyncio
import structlog
from bullmq import Queue

from adapters.bullmq.dead_letter_admin import DeadLetterAdmin
from adapters.bullmq.heartbeat import live_workers
from adapters.observability.metrics import MetricsRecorder
from adapters.redis_keys import dead_lettered_key, heartbeat_index_key
from adapters.redis_topology import QueuePrefixes, as_prefixes
from domain.jobs import QueueMaintenanceJob
from domain.outcomes import Cleaned

log = structlog.get_logger()

FINISHED_STATES = ("completed", "failed")
"""The only sets maintenance cleans (BullMQ state names)."""
FAILED_KEPT_AT_LEAST_S = 3600.0
"""Failed jobs younger than this stay, whatever the count: the dead-letter sweeper may still need them."""


@attrs.frozen
class MaintenancePolicy:
    """How much finished work Redis keeps, per queue: ages in seconds, counts per state."""

    completed_max_age_s: float = 48 * 3600.0
    failed_max_age_s: float = 14 * 86400.0
    finished_max_count: int = 10_000
    dead_letter_retention_s: float = 30 * 86400.0
    batch: int = 1000
    """Jobs removed per ``clean`` call (one Lua script run: bounded so Redis is not blocked for long)."""

    def max_age_s(self, state: str) -> float:
        return self.completed_max_age_s if state == "completed" else self.failed_max_age_s


@attrs.define
class QueueMaintenance:
    """One maintenance run over ``queues`` of a deployment (``prefixes``: each queue's and ours; a str: one for
    all); counts go to ``metrics`` as well."""

    client: redis_asyncio.Redis
    prefixes: QueuePrefixes = attrs.field(converter=as_prefixes)
    queues: Sequence[str]
    policy: MaintenancePolicy
    metrics: MetricsRecorder

    async def run(self, _job: QueueMaintenanceJob = QueueMaintenanceJob()) -> Cleaned:  # noqa: B008  # frozen, empty
        """Clean everything due now; returns what was removed, by ``<queue>:<kind>`` (zero counts included)."""
        removed: dict[str, int] = {}
        for queue_name in self.queues:
            queue = Queue(queue_name, {"prefix": self.prefixes.of(queue_name), "connection": self.client})
            for state in FINISHED_STATES:
                removed[f"{queue_name}:{state}"] = await self._clean_finished(queue, state)
        now_ms = int(time.time() * 1000)
        removed["dead-letter:expired"] = await DeadLetterAdmin(self.client, self.prefixes).purge(
            self.policy.dead_letter_retention_s, now_ms
        )
        removed["cf:leftovers"] = await self._clean_leftovers(now_ms)
        for key, count in removed.items():
            queue_name, _, kind = key.partition(":")
            self.metrics.maintenance_removed(queue_name, kind, count)
        cleaned = Cleaned(tuple(sorted(removed.items())))
        log.info(
            "queues_maintained", removed=cleaned.total, **{k.replace(":", "_"): v for k, v in removed.items() if v}
        )
        return cleaned

    async def _clean_finished(self, queue: Queue, state: str) -> int:
        grace_ms = int(self.policy.max_age_s(state) * 1000)
        total = await self._clean_in_batches(queue, state, grace_ms, None)
        excess = int(await self.client.zcard(queue.toKey(state))) - self.policy.finished_max_count
        if excess > 0:
            kept_ms = int(FAILED_KEPT_AT_LEAST_S * 1000) if state == "failed" else 0
            total += await self._clean_in_batches(queue, state, kept_ms, excess)
        return total

    async def _clean_in_batches(self, queue: Queue, state: str, grace_ms: int, at_most: int | None) -> int:
        """``Queue.clean`` (oldest first) until nothing older than ``grace_ms`` is left, or ``at_most`` removed."""
        total = 0
        while at_most is None or total < at_most:
            limit = self.policy.batch if at_most is None else min(self.policy.batch, at_most - total)
            removed = len(await queue.clean(grace_ms, limit, state))
            total += removed
            if removed < limit:
                break
        return total

    async def _clean_leftovers(self, now_ms: int) -> int:
        expired_marks = now_ms - int(self.policy.dead_letter_retention_s * 1000)
        removed = int(await self.client.zremrangebyscore(dead_lettered_key(self.prefixes.home), "-inf", expired_marks))
        for queue_name in self.queues:
            index = heartbeat_index_key(self.prefixes.home, queue_name)
            before = int(await self.client.scard(index))
            alive = len(await live_workers(self.client, self.prefixes.home, queue_name))  # drops expired members
            removed += max(before - alive, 0)
        return removed
