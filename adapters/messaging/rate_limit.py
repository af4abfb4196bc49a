"""A provider rate limit shared by every worker process: a GCRA slot reservation in one Redis Lua script.

Each ``acquire`` atomically reserves the next free slot (``1 / per_second`` apart, plus a small burst) and sleeps
until it; callers that would wait longer than ``max_wait`` reserve nothing and get ``DeliveryRateLimited``, so a
job never holds its BullMQ lock while queueing behind a long burst.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta

import attrs
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from domain.errors import DeliveryRateLimited, InvalidValue, TransientError
from domain.ports import Clock

# KEYS[1]: the limiter's key (its value: the theoretical arrival time of the next slot, in microseconds).
# ARGV: emission interval, burst tolerance, max wait (all microseconds), now (microseconds, or "" for Redis TIME).
# Returns {1, wait} when a slot was reserved (wait: microseconds until it), {0, wait} when it would be too far.
_GCRA_RESERVE = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[4])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then
  return {0, wait}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, wait}
"""


@attrs.define
class RedisRateLimiter:
    """At most ``per_second`` admissions per second (after an initial ``burst``) for everyone sharing ``key``.

    ``time_source`` (seconds) exists for tests; by default the Redis server's clock is the one clock of every process.
    """

    redis: Redis
    key: str
    per_second: float
    clock: Clock
    burst: int = 1
    max_wait: timedelta = timedelta(seconds=5)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    time_source: Callable[[], float] | None = None
    _script: AsyncScript = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise InvalidValue("rate limit", "must be a positive number of messages per second")
        if self.burst < 1:
            raise InvalidValue("rate limit burst", "must be at least 1")
        self._script = self.redis.register_script(_GCRA_RESERVE)

    async def acquire(self) -> None:
        """Wait for this caller's slot; DeliveryRateLimited (nothing reserved) when it is beyond ``max_wait``."""
        interval = round(1_000_000 / self.per_second)
        now = "" if self.time_source is None else str(round(self.time_source() * 1_000_000))
        args: list[int | str] = [
            interval,
            (self.burst - 1) * interval,
            round(self.max_wait.total_seconds() * 1_000_000),
            now,
        ]
        try:
            admitted, wait = await self._script(keys=[self.key], args=args)
        except (RedisError, OSError) as error:
            raise TransientError(f"rate limiter unavailable ({type(error).__name__})") from None
        if not admitted:
            raise DeliveryRateLimited(retry_at=self.clock.now() + timedelta(microseconds=int(wait)))
        if wait > 0:
            await self.sleep(int(wait) / 1_000_000)
