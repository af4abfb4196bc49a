"""Readiness right after a Redis restart: the health server's pooled connection died with the old server, and the
first probe after the restart must not report that dead connection as "redis unreachable"."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from adapters.bullmq.connection import RedisSettings
from adapters.health.probe import HealthProbe
from entrypoints.bootstrap import open_probe_redis
from tests.support.queues import OwnRedis

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def redis_server(tmp_path: pathlib.Path) -> Iterator[OwnRedis]:
    """A redis-server of this test only, restarted on the same port (never the shared one)."""
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_first_probe_after_a_redis_restart_is_ready(redis_server: OwnRedis) -> None:
    """Five restarts with no probe during the outage: each first /health/ready check after it passes, while a
    probe during the outage still names Redis."""
    client = open_probe_redis(RedisSettings(port=redis_server.port), 2.0)
    probe = HealthProbe(client, POSTGRES_DSN, "cf-ready", queues=(), required_queues=(), timeout_seconds=2.0)
    try:
        assert (await probe.readiness()).reasons == []
        for _ in range(5):
            redis_server.stop()
            redis_server.start()
            assert (await probe.readiness()).reasons == []
        redis_server.stop()
        assert (await probe.readiness()).reasons == ["redis unreachable"]
    finally:
        await client.aclose()
