"""Fixtures of the scheduling integration tests: a unique key prefix per test on the shared Redis, removed afterwards,
and a client configured as the workers' own (decoded replies)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from tests.support.queues import delete_keys, unique_prefix


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix()
    yield name
    await delete_keys(name)


@pytest.fixture
async def client() -> AsyncIterator[redis_asyncio.Redis]:
    connection = redis_asyncio.Redis(port=6379, decode_responses=True)
    yield connection
    await connection.aclose()
