"""Checks that refuse to start a worker on a Redis or queue it would silently damage.

- ``maxmemory-policy`` other than ``noeviction`` lets Redis evict job hashes and even the id counter: jobs vanish
  and ids are reused. bullmq 3.4.4 only warns, and only through ``warnings``; we refuse.
- The queue's ``meta`` hash carries the version of the library that created it (npm bullmq writes
  ``bullmq:6.7.0``; PyPI bullmq 3.4.4 writes none). The worker-path Lua scripts of PyPI 3.4.4 were checked
  identical to those of npm 6.x; another major may lay its keys out differently, so we refuse it.
- The installed PyPI bullmq must be the release whose internals ``patched_worker`` overrides.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import redis.asyncio as redis_asyncio

from adapters.bullmq.keys import queue_key
from adapters.bullmq.patched_worker import check_bullmq_version
from adapters.redis_topology import info_of_every_node
from domain.errors import ConfigurationError

COMPATIBLE_NODE_MAJORS: frozenset[int] = frozenset({6})
"""npm bullmq majors whose queues PyPI bullmq 3.4.4 can consume."""

_MARKER = re.compile(r"bullmq:(\d+)\.\d+\.\d+")


async def check_eviction_policy(client: redis_asyncio.Redis) -> None:
    """Every server (every node of a Cluster) must keep ``noeviction``."""
    policies = {info.get("maxmemory_policy") for info in await info_of_every_node(client, "memory")}
    evicting = sorted(policies - {"noeviction"}, key=str)
    if evicting:
        raise ConfigurationError(
            f"Redis maxmemory-policy is {evicting[0]!r}; BullMQ needs 'noeviction' or it loses jobs silently "
            "(set maxmemory-policy noeviction in redis.conf)"
        )


def check_version_marker(marker: str | None, compatible_majors: Collection[int] = COMPATIBLE_NODE_MAJORS) -> None:
    """Accept no marker (a queue nobody created yet) or ``bullmq:<major>.x.y`` with a compatible major."""
    if marker is None:
        return
    match = _MARKER.fullmatch(marker)
    if match is None or int(match.group(1)) not in compatible_majors:
        majors = ", ".join(str(m) for m in sorted(compatible_majors))
        raise ConfigurationError(
            f"queue was created by {marker!r}; this worker (PyPI bullmq 3.4.4) consumes queues of npm bullmq "
            f"major {majors} only"
        )


async def check_queue_version(client: redis_asyncio.Redis, prefix: str, queue: str) -> None:
    marker = await client.hget(queue_key(prefix, queue, "meta"), "version")
    check_version_marker(marker.decode() if isinstance(marker, bytes) else marker)


async def run_startup_checks(client: redis_asyncio.Redis, prefix: str, queue: str) -> None:
    """Raise ConfigurationError naming the first problem found; return when the worker may start."""
    check_bullmq_version()
    await check_eviction_policy(client)
    await check_queue_version(client, prefix, queue)
