"""The Redis client handed to ``bullmq``: pooled, with socket timeouts above the worker's longest block.

Why not the library's own connection: bullmq 3.4.4 builds a ``single_connection_client``, so all concurrent jobs
share one connection and one command is in flight at a time (a third of the measured throughput), and redis-py
8.x defaults to a 5 s socket timeout, shorter than the worker's blocking ``BZPOPMIN`` (up to 10 s): an idle
worker then ran delayed jobs minutes late. ``RedisConnection`` accepts a ready ``redis.asyncio.Redis``; we give
it one on a connection pool with a retry policy of our own, since the library's no longer applies to a client it
did not build. The pool does not block waiting for a free connection (a blocking pool's per-command wait timer
cost ~10 % of the worker's CPU in the profile); the worker's design bounds its use (one connection per concurrent
job, plus the blocking wait, lock renewal, stalled check and dead-letter copies) and a generous cap turns a leak
into a loud error instead of an exhausted Redis.

Every process opens its Redis here, in the topology the settings name: one server (plain or TLS, with an ACL user),
a master found through Sentinel, or a Cluster (adapters/redis_topology.py).
"""

from __future__ import annotations

from typing import Any

import attrs
import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from adapters.redis_topology import Endpoint, is_cluster, open_cluster, open_sentinel_master
from domain.errors import ConfigurationError

LONGEST_BLOCK_S = 10.0
"""bullmq caps the worker's ``BZPOPMIN`` marker wait at 10 s (``default_maximum_block_timeout``)."""


@attrs.frozen
class RedisSettings:
    """Where Redis is and how patiently to talk to it. ``socket_timeout_s`` None waits for ever (not advised:
    a half-open connection then hangs the worker); otherwise it must exceed the longest blocking wait."""

    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = attrs.field(default=None, repr=False)
    username: str | None = None
    db: int = 0
    socket_timeout_s: float | None = LONGEST_BLOCK_S + 5.0
    connect_timeout_s: float = 5.0
    retries: int = 8
    """Per command, on connection loss or timeout; with the backoff below this bridges ~10 s of outage."""
    retry_cap_s: float = 2.0
    tls: bool = False
    tls_ca_file: str | None = None
    """The CA that signed the server's certificate; None: the system's trusted CAs."""
    cluster_nodes: tuple[Endpoint, ...] = ()
    """Seeds of a Redis Cluster (cluster mode when not empty; host and port are then unused)."""
    sentinels: tuple[Endpoint, ...] = ()
    sentinel_master: str = "mymaster"
    """With ``sentinels``: the master's name in Sentinel (sentinel mode; host and port are then unused)."""

    def __attrs_post_init__(self) -> None:
        if self.socket_timeout_s is not None and self.socket_timeout_s <= LONGEST_BLOCK_S + 1.0:
            raise ConfigurationError(
                f"Redis socket timeout must exceed bullmq's longest blocking wait ({LONGEST_BLOCK_S:g} s) "
                "by more than a second, or be None"
            )


class HiredisPacking:
    """redis-py packs commands with hiredis on its sync connections but in pure Python on its async ones; a worker
    sends two ~20-argument Lua calls per job, and the Python packing was a fifth of its CPU time (profiled)."""

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        packed: list[bytes] = self._serializer.pack(*args)  # type: ignore[arg-type]  # redis-py types args as List
        return packed


class HiredisPackingConnection(HiredisPacking, redis_asyncio.Connection):
    """A plain connection packing with hiredis."""


class HiredisPackingSSLConnection(HiredisPacking, redis_asyncio.SSLConnection):
    """A TLS connection packing with hiredis."""


def open_redis(
    settings: RedisSettings,
    concurrency: int = 10,
    client_name: str | None = None,
    single_connection: bool = False,
) -> redis_asyncio.Redis:
    """A client on its own connection pool for a worker of ``concurrency`` jobs. Close it with :func:`close_redis`.

    ``client_name`` names every connection of the pool as it connects (``CLIENT SETNAME``, again after a
    reconnection); ``single_connection`` keeps one connection for all commands (one at a time; plain and TLS
    servers only: a Cluster or Sentinel client keeps its pools).
    """
    return open_client(
        settings,
        2 * concurrency + 8,
        settings.socket_timeout_s,
        client_name=client_name,
        single_connection=single_connection,
    )


def open_client(
    settings: RedisSettings,
    max_connections: int,
    socket_timeout_s: float | None,
    *,
    client_name: str | None = None,
    single_connection: bool = False,
) -> redis_asyncio.Redis:
    """A client in the settings' topology with ``max_connections`` per server; ``socket_timeout_s`` may be shorter
    than ``settings.socket_timeout_s`` for a client that never blocks (the health server)."""
    retry = Retry(
        ExponentialWithJitterBackoff(cap=settings.retry_cap_s, base=0.05),
        settings.retries,
        supported_errors=(RedisConnectionError, RedisTimeoutError, BusyLoadingError),
    )
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_keepalive": True,
        "decode_responses": True,  # what bullmq's own client uses; its scripts expect str replies
        "retry": retry,
        "client_name": client_name,
        **_tls_options(settings),
    }
    if settings.cluster_nodes:
        return open_cluster(settings.cluster_nodes, max_connections, options)
    if settings.sentinels:
        return open_sentinel_master(settings.sentinels, settings.sentinel_master, max_connections, options)
    options.pop("ssl", None)
    pool = redis_asyncio.ConnectionPool(
        connection_class=HiredisPackingSSLConnection if settings.tls else HiredisPackingConnection,
        max_connections=max_connections,
        host=settings.host,
        port=settings.port,
        db=settings.db,
        **options,
    )
    return redis_asyncio.Redis(connection_pool=pool, single_connection_client=single_connection)


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    if not settings.tls:
        return {}
    return {"ssl": True, "ssl_ca_certs": settings.tls_ca_file, "ssl_cert_reqs": "required"}


async def close_redis(client: redis_asyncio.Redis) -> None:
    """Close the client and its pool (bullmq's ``close()`` leaves a pool it did not create open)."""
    if is_cluster(client):  # a cluster client owns its node pools
        await client.aclose()
        return
    await client.aclose(close_connection_pool=True)
