"""Fixtures of the messaging integration tests: the fake provider servers, a Redis prefix, a stopped clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.support.fakes.clock import FakeClock
from tests.support.fakeservers.sendgrid import FakeSendGrid
from tests.support.fakeservers.twilio import FakeTwilio
from tests.support.scratch import redis_prefix, running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake_twilio(clock: FakeClock) -> AsyncIterator[FakeTwilio]:
    async with running(FakeTwilio(now=clock.now)) as server:
        yield server


@pytest.fixture
async def fake_sendgrid() -> AsyncIterator[FakeSendGrid]:
    async with running(FakeSendGrid()) as server:
        yield server


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    async with redis_prefix() as found:
        yield found
