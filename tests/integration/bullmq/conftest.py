"""Fixtures of the BullMQ integration tests: a unique key prefix per test on the shared Redis, removed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.queues import delete_keys, unique_prefix


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix()
    yield name
    await delete_keys(name)
