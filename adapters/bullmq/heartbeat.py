"""The worker heartbeat contract: how the health server knows which workers are alive.

Each worker process writes ``<prefix>:cf:heartbeat:<queue>:<worker_id>`` (a JSON payload) with a TTL every
``interval`` seconds and lists its id in the set ``<prefix>:cf:heartbeats:<queue>``. A worker whose key has expired
(crashed, blocked event loop, lost Redis) is no longer counted; readers drop such ids from the set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence

import attrs
import redis.asyncio as aioredis
import structlog

from adapters.periodic import run_periodically
from adapters.redis_keys import heartbeat_index_key, heartbeat_key

log = structlog.get_logger()


@attrs.define
class Heartbeat:
    """Run by each worker process beside its BullMQ Worker: ``asyncio.create_task(heartbeat.run(stop))``.

    ``details`` (optional) returns small, PII-free facts to publish, e.g. ``{"active_jobs": 3}``. Redis errors
    are logged and retried at the next beat; the key's TTL makes a silent worker disappear by itself.
    """

    client: aioredis.Redis
    prefix: str
    queue: str
    worker_id: str
    interval_seconds: float = 5.0
    ttl_seconds: float = 15.0
    details: Callable[[], Mapping[str, object]] | None = None

    async def beat(self) -> None:
        """Write the heartbeat once."""
        payload = {"worker_id": self.worker_id, "queue": self.queue, **(self.details() if self.details else {})}
        ttl_ms = int(self.ttl_seconds * 1000)
        index = heartbeat_index_key(self.prefix, self.queue)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(heartbeat_key(self.prefix, self.queue, self.worker_id), json.dumps(payload), px=ttl_ms)
            pipe.sadd(index, self.worker_id)
            pipe.pexpire(index, ttl_ms * 4)
            await pipe.execute()

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every ``interval_seconds`` until ``stop`` is set, then remove this worker's heartbeat."""

        async def beat_or_log() -> None:
            try:
                await self.beat()
            except Exception as exc:  # Redis down: the key expires, readiness says so; keep trying
                log.warning("heartbeat_failed", queue=self.queue, error_type=type(exc).__name__)

        await run_periodically(beat_or_log, self.interval_seconds, stop)
        await self.remove()

    async def remove(self) -> None:
        """Withdraw this worker at shutdown so readiness reflects it at once."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(heartbeat_key(self.prefix, self.queue, self.worker_id))
                pipe.srem(heartbeat_index_key(self.prefix, self.queue), self.worker_id)
                await pipe.execute()
        except Exception as exc:  # the key expires by itself
            log.warning("heartbeat_removal_failed", queue=self.queue, error_type=type(exc).__name__)


@attrs.frozen
class LiveWorker:
    worker_id: str
    details: Mapping[str, object]


async def live_workers(client: aioredis.Redis, prefix: str, queue: str) -> Sequence[LiveWorker]:
    """The workers of ``queue`` whose heartbeat has not expired; expired ids are dropped from the index."""
    index = heartbeat_index_key(prefix, queue)
    members = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in await client.smembers(index))
    if not members:
        return []
    payloads = await client.mget([heartbeat_key(prefix, queue, m) for m in members])
    alive, expired = [], []
    for worker_id, payload in zip(members, payloads, strict=True):
        if payload is None:
            expired.append(worker_id)
        else:
            alive.append(LiveWorker(worker_id, json.loads(payload)))
    if expired:
        await client.srem(index, *expired)
    return alive
