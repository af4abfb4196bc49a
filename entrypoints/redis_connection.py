"""The Redis connection of every process (workers, CLI, health server, start-up checks), from the settings.

Kept apart from the composition root so the health server and the start-up checks open the same connection
without importing every adapter.
"""

from __future__ import annotations

from adapters.bullmq.connection import RedisSettings
from adapters.redis_topology import parse_endpoints
from entrypoints.settings import Settings


def redis_settings(settings: Settings) -> RedisSettings:
    """The connection every process opens: one server, a Sentinel-watched master or a Cluster (see Settings)."""
    endpoint = settings.redis_endpoint
    return RedisSettings(
        host=endpoint.host,
        port=endpoint.port,
        username=endpoint.username,
        password=endpoint.password,
        db=endpoint.db,
        tls=endpoint.tls,
        tls_ca_file=settings.redis_tls_ca_file,
        cluster_nodes=parse_endpoints(settings.redis_cluster_nodes) if settings.redis_cluster_nodes else (),
        sentinels=parse_endpoints(settings.redis_sentinels) if settings.redis_sentinels else (),
        sentinel_master=settings.redis_sentinel_master,
    )
