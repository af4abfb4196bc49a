"""A Redis that may evict keys loses jobs silently: the worker refuses it at start-up, naming the setting."""

from __future__ import annotations

import pathlib

import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.startup_checks import check_eviction_policy
from domain.errors import ConfigurationError
from tests.support.queues import OwnRedis


@pytest.mark.parametrize(("policy", "refused"), [("allkeys-lru", True), ("volatile-ttl", True), ("noeviction", False)])
async def test_only_a_redis_with_noeviction_is_accepted(tmp_path: pathlib.Path, policy: str, refused: bool) -> None:
    """A real redis-server with each policy: every evicting policy is refused with the setting named."""
    server = OwnRedis(tmp_path, "--maxmemory-policy", policy)
    server.start()
    client = redis_asyncio.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    try:
        if refused:
            with pytest.raises(ConfigurationError, match=r"maxmemory-policy is .* needs 'noeviction'"):
                await check_eviction_policy(client)
        else:
            await check_eviction_policy(client)
    finally:
        await client.aclose()
        server.stop()
