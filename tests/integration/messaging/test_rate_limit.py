"""RedisRateLimiter against the real Redis: several limiter instances (separate clients) share one provider limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import attrs
import pytest
from redis.asyncio import Redis

from adapters.messaging.rate_limit import RedisRateLimiter
from domain.errors import DeliveryRateLimited, InvalidValue
from tests.support.fakes.clock import FakeClock


@attrs.define
class StoppedTime:
    """A time source that stands still; sleeping records the instant the caller would wake, without waiting."""

    now: float = 1_000_000.0
    wakes: list[float] = attrs.Factory(list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.wakes.append(self.now + seconds)


@pytest.fixture
async def second_client() -> AsyncIterator[Redis]:
    client = Redis(host="127.0.0.1", port=6379)
    yield client
    await client.aclose()


def limiter(client: Redis, key: str, time: StoppedTime, per_second: float, **options: object) -> RedisRateLimiter:
    return RedisRateLimiter(
        client,
        key,
        per_second,
        FakeClock(),
        sleep=time.sleep,
        time_source=time,
        **options,  # type: ignore[arg-type]
    )


def admitted_per_window(instants: list[float], start: float, window: float = 1.0) -> dict[int, int]:
    counts: dict[int, int] = {}
    for instant in instants:
        index = int((instant - start) // window)
        counts[index] = counts.get(index, 0) + 1
    return counts


async def test_two_processes_sharing_a_key_stay_within_the_limit(
    redis: tuple[Redis, str], second_client: Redis
) -> None:
    """A concurrent burst through two limiters (two Redis clients) is admitted at most per_second per second."""
    client, prefix = redis
    time = StoppedTime()
    first = limiter(client, f"{prefix}:twilio", time, 5, max_wait=timedelta(minutes=1))
    second = limiter(second_client, f"{prefix}:twilio", time, 5, max_wait=timedelta(minutes=1))

    await asyncio.gather(*(one.acquire() for one in (first, second) for _ in range(20)))

    # The first caller is admitted at once (no sleep recorded); the other 39 wake at their reserved slots.
    instants = sorted([time.now, *time.wakes])
    assert len(instants) == 40
    assert admitted_per_window(instants, time.now) == dict.fromkeys(range(8), 5)
    assert all(later - earlier >= 1.0 for earlier, later in zip(instants, instants[5:], strict=False))


async def test_burst_admits_that_many_at_once_then_paces(redis: tuple[Redis, str], second_client: Redis) -> None:
    """With burst 3, three callers pass without waiting; the rest are spaced 1/per_second apart."""
    client, prefix = redis
    time = StoppedTime()
    first = limiter(client, f"{prefix}:sg", time, 10, burst=3, max_wait=timedelta(minutes=1))
    second = limiter(second_client, f"{prefix}:sg", time, 10, burst=3, max_wait=timedelta(minutes=1))

    for one in (first, second, first, second, first, second):
        await one.acquire()

    assert [round(w - time.now, 6) for w in time.wakes] == [0.1, 0.2, 0.3]


async def test_a_wait_beyond_the_bound_is_rate_limited_and_reserves_nothing(
    redis: tuple[Redis, str], second_client: Redis
) -> None:
    """Past max_wait the caller gets DeliveryRateLimited at its would-be slot, and no slot is consumed."""
    client, prefix = redis
    time = StoppedTime()
    clock = FakeClock()
    first = RedisRateLimiter(
        client, f"{prefix}:k", 2, clock, max_wait=timedelta(seconds=1), sleep=time.sleep, time_source=time
    )
    second = limiter(second_client, f"{prefix}:k", time, 2, max_wait=timedelta(seconds=1))
    for _ in range(3):  # slots at +0, +0.5, +1.0
        await second.acquire()

    with pytest.raises(DeliveryRateLimited) as caught:
        await first.acquire()
    assert caught.value.retry_at == clock.now() + timedelta(seconds=1.5)

    time.now += 0.5  # the +0.5 slot has come; the refused call left +1.5 free
    await first.acquire()
    assert time.wakes[-1] == pytest.approx(time.now + 1.0)


async def test_time_moving_on_frees_the_limit(redis: tuple[Redis, str]) -> None:
    """After an idle second, a caller is admitted without waiting again."""
    client, prefix = redis
    time = StoppedTime()
    one = limiter(client, f"{prefix}:idle", time, 1, max_wait=timedelta(seconds=5))
    await one.acquire()
    await one.acquire()
    assert len(time.wakes) == 1
    time.now += 10
    await one.acquire()
    assert len(time.wakes) == 1


async def test_redis_server_clock_is_shared_by_default(redis: tuple[Redis, str], second_client: Redis) -> None:
    """Without a time source the script uses Redis TIME: a second process right after the first must queue."""
    client, prefix = redis
    first = RedisRateLimiter(client, f"{prefix}:server", 0.5, FakeClock(), max_wait=timedelta(0))
    second = RedisRateLimiter(second_client, f"{prefix}:server", 0.5, FakeClock(), max_wait=timedelta(0))
    await first.acquire()
    with pytest.raises(DeliveryRateLimited):
        await second.acquire()


@pytest.mark.parametrize(("per_second", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_nonsense_limits_are_refused(per_second: float, burst: int) -> None:
    """A limit that is not a positive finite rate with a burst of at least one is refused at construction."""
    with pytest.raises(InvalidValue):
        RedisRateLimiter(Redis(), "k", per_second, FakeClock(), burst=burst)
