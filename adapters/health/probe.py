"""What the health server checks and reads: Redis, PostgreSQL, worker heartbeats, queues and schedules."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import attrs
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.bullmq.heartbeat import live_workers
from adapters.bullmq.keys import DEAD_LETTER_QUEUE
from adapters.health.owed import OwedReport, dead_letter_copies, owed_report
from adapters.health.queues import all_queue_stats, dead_letter_size, redis_now_ms
from adapters.observability.metrics import MetricsSnapshot, QueueStats, ScheduleStatus, read_recorded
from adapters.redis_topology import QueuePrefixes, as_prefixes
from adapters.scheduling.status_store import missing_schedules, read_schedules


class Unhealthy(Exception):
    """A check failed; ``reason`` names what, without secrets (no URLs, no passwords)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@contextlib.contextmanager
def _redis_answers() -> Iterator[None]:
    """Redis lost between the ping and the reads is still "redis unreachable", never a 500."""
    try:
        yield
    except (RedisError, OSError, TimeoutError):
        raise Unhealthy("redis unreachable") from None


@attrs.frozen
class Readiness:
    ok: bool
    reasons: Sequence[str]
    checks: dict[str, object]


@attrs.frozen
class ScheduleHealth:
    status: ScheduleStatus
    problem: str | None


@attrs.define
class HealthProbe:
    """``redis`` is a client for BullMQ's Redis (the health server's own, with short timeouts); ``database_dsn``
    PostgreSQL's DSN; ``queues`` the queues to report and ``required_queues`` those that need a live worker."""

    redis: aioredis.Redis
    database_dsn: str
    prefixes: QueuePrefixes = attrs.field(converter=as_prefixes)
    """Each queue's key prefix and ours (a str: one for all)."""
    queues: Sequence[str]
    required_queues: Sequence[str]
    dead_letter_queue: str = DEAD_LETTER_QUEUE
    timeout_seconds: float = 2.0
    schedule_grace: timedelta = timedelta(minutes=5)
    owed_after: timedelta = timedelta(minutes=15)
    owed_scan_limit: int = 1000
    """Dead-letter copies examined for owed messages (newest first)."""

    async def check_redis(self) -> None:
        try:
            await asyncio.wait_for(self.redis.ping(), self.timeout_seconds)
        except Exception:
            raise Unhealthy("redis unreachable") from None

    async def check_postgres(self) -> None:
        try:
            connection = await asyncpg.connect(self.database_dsn, timeout=self.timeout_seconds)
            try:
                await asyncio.wait_for(connection.fetchval("select 1"), self.timeout_seconds)
            finally:
                await connection.close(timeout=self.timeout_seconds)
        except Exception:
            raise Unhealthy("postgres unreachable") from None

    async def _guarded(self, check: str) -> str | None:
        try:
            await (self.check_redis() if check == "redis" else self.check_postgres())
        except Unhealthy as unhealthy:
            return unhealthy.reason
        return None

    async def readiness(self) -> Readiness:
        """Redis and PostgreSQL answer, and every required queue has at least one heartbeating worker."""
        redis_problem, postgres_problem = await asyncio.gather(self._guarded("redis"), self._guarded("postgres"))
        reasons = [p for p in (redis_problem, postgres_problem) if p]
        checks: dict[str, object] = {"redis": redis_problem or "ok", "postgres": postgres_problem or "ok"}
        if redis_problem is None:
            try:
                with _redis_answers():
                    workers = {q: len(await live_workers(self.redis, self.prefixes.home, q)) for q in self.queues}
            except Unhealthy as unhealthy:
                reasons.insert(0, unhealthy.reason)
                checks["redis"] = unhealthy.reason
            else:
                checks["workers"] = workers
                reasons += [f"no worker heartbeating for queue {q}" for q in self.required_queues if not workers.get(q)]
        return Readiness(ok=not reasons, reasons=reasons, checks=checks)

    async def queue_stats(self) -> tuple[list[QueueStats], int]:
        await self.check_redis()
        with _redis_answers():
            return (
                await all_queue_stats(self.redis, self.prefixes, self.queues),
                await dead_letter_size(self.redis, self.prefixes, self.dead_letter_queue),
            )

    async def owed(self) -> OwedReport | None:
        """Messages still owed that the queues let go of (adapters/health/owed.py); None when Redis or
        PostgreSQL cannot answer."""
        try:
            with _redis_answers():
                copies = await dead_letter_copies(
                    self.redis, self.prefixes.of(self.dead_letter_queue), self.dead_letter_queue, self.owed_scan_limit
                )
                now = datetime.fromtimestamp(await redis_now_ms(self.redis) / 1000, tz=UTC)
            connection = await asyncpg.connect(self.database_dsn, timeout=self.timeout_seconds)
            try:
                return await asyncio.wait_for(
                    owed_report(connection, copies, now, self.owed_after), self.timeout_seconds * 5
                )
            finally:
                await connection.close(timeout=self.timeout_seconds)
        except (Unhealthy, OSError, TimeoutError, asyncpg.PostgresError):
            return None

    async def schedules(self) -> list[ScheduleHealth]:
        """Each schedule with its problem, if any: missing from its queue (its job scheduler is gone), overdue
        (next run passed by more than the grace) or failed."""
        await self.check_redis()
        with _redis_answers():
            now = datetime.fromtimestamp(await redis_now_ms(self.redis) / 1000, tz=UTC)
            statuses = await read_schedules(self.redis, self.prefixes.home)
            missing = await missing_schedules(self.redis, self.prefixes)
        overdue_before = now - self.schedule_grace
        return [
            ScheduleHealth(
                s, f"schedule {s.name} missing" if s.name in missing else _schedule_problem(s, overdue_before)
            )
            for s in statuses
        ]

    async def snapshot(self) -> MetricsSnapshot:
        """Everything ``/metrics`` exposes; with Redis down (even if lost after the ping), only the dependency
        gauges."""
        redis_problem, postgres_problem = await asyncio.gather(self._guarded("redis"), self._guarded("postgres"))
        dependencies = {"redis": redis_problem is None, "postgres": postgres_problem is None}
        if redis_problem is None:
            try:
                with _redis_answers():
                    return MetricsSnapshot(
                        queues=await all_queue_stats(self.redis, self.prefixes, self.queues),
                        dead_letter_size=await dead_letter_size(self.redis, self.prefixes, self.dead_letter_queue),
                        schedules=await read_schedules(self.redis, self.prefixes.home),
                        recorded=await read_recorded(self.redis, self.prefixes.home),
                        dependencies=dependencies,
                        redis_memory=await redis_memory(self.redis),
                        owed=await self.owed() if postgres_problem is None else None,
                    )
            except Unhealthy:
                dependencies["redis"] = False
        return MetricsSnapshot(queues=[], dead_letter_size=None, schedules=[], recorded=[], dependencies=dependencies)


async def redis_memory(client: aioredis.Redis) -> dict[str, int]:
    """``used`` and (when set: 0 means no limit) ``max`` bytes from ``INFO memory``."""
    info = await client.info("memory")
    found = {"used": int(info.get("used_memory", 0))}
    if int(info.get("maxmemory", 0)):
        found["max"] = int(info["maxmemory"])
    return found


def _schedule_problem(status: ScheduleStatus, overdue_before: datetime) -> str | None:
    if status.last_outcome not in (None, "ok"):
        return f"schedule {status.name} last run {status.last_outcome}"
    if status.next_run:
        try:
            next_run = datetime.fromisoformat(status.next_run)
        except ValueError:
            return f"schedule {status.name} has an unreadable next_run"
        if next_run.tzinfo is not None and next_run < overdue_before:
            return f"schedule {status.name} overdue"
    return None
