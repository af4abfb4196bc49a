"""Where Redis is: one server, a master watched by Sentinel, or a Cluster; and the key rule a Cluster imposes.

On a Redis Cluster every key of one BullMQ queue must live in one hash slot (its Lua scripts touch many of them at
once), which BullMQ obtains from a hash tag in the prefix, such as ``{bull}`` (https://docs.bullmq.io/guide/going-to-
production, "Redis Cluster"; the tag rule is Redis' own: https://redis.io/docs/latest/operate/oss_and_stack/
reference/cluster-spec/#hash-tags). Our own keys all start with the deployment's prefix, so its tag puts them in one
slot too. A queue may have a prefix of its own (one hash tag per queue), which spreads the queues over the shards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Mapping
from typing import Any, cast

import attrs
import redis.asyncio as redis_asyncio
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.typing import EncodableT

Endpoint = tuple[str, int]

SENTINEL_OPTIONS = ("socket_timeout", "socket_connect_timeout", "ssl", "ssl_ca_certs", "ssl_cert_reqs")
"""What the Sentinel connections share with the data connections: timeouts and TLS (Sentinel ACLs are not used)."""


def parse_endpoints(text: str) -> tuple[Endpoint, ...]:
    """``"host:port,host:port"`` as endpoints. Raises ValueError (no value quoted) on an empty list or a part
    that is not ``host:port`` with a port from 1 to 65535."""
    endpoints = []
    for part in (piece.strip() for piece in text.split(",")):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be comma-separated host:port pairs (port 1-65535)")
        endpoints.append((host.strip("[]"), int(port)))
    return tuple(endpoints)


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes when the key has one: between the first ``{`` and the next ``}``,
    if not empty; None when the whole key is hashed."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def prefix_pins_one_slot(prefix: str) -> bool:
    """Whether every key ``<prefix>:...`` hashes to one slot: the prefix holds a complete, non-empty hash tag."""
    return hash_tag(prefix) is not None


def parse_queue_prefixes(text: str, queues: Collection[str]) -> dict[str, str]:
    """``"queue=prefix,queue=prefix"`` as a mapping. Raises ValueError (quoting no value) on a part
    without ``=``, a queue not in ``queues``, a queue named twice, or an empty prefix."""
    prefixes: dict[str, str] = {}
    for part in (piece.strip() for piece in text.split(",") if piece.strip()):
        queue, equals, prefix = (item.strip() for item in part.partition("="))
        if not equals or not prefix:
            raise ValueError("must be comma-separated queue=prefix pairs with a non-empty prefix")
        if queue not in queues:
            raise ValueError(f"must name only the queues {', '.join(sorted(queues))}")
        if queue in prefixes:
            raise ValueError("must name each queue once")
        prefixes[queue] = prefix
    return prefixes


@attrs.frozen
class QueuePrefixes:
    """Where BullMQ keys live: queue ``q``'s keys are ``<of(q)>:q:...``, its own prefix when it has one (the Node
    CRM's ``new Queue(q, {prefix})``), else ``home``; every key of ours is ``<home>:cf:...``.

    One hash-tagged ``home`` for all (``{bull}``) keeps every queue on one Cluster shard; a tagged prefix per queue
    (``{<queue>}``, BullMQ's advice for several queues: https://docs.bullmq.io/patterns/redis-cluster) spreads
    the queues over the shards."""

    home: str
    own: Mapping[str, str] = attrs.field(factory=dict)

    def of(self, queue: str) -> str:
        """The prefix of ``queue``'s keys."""
        return self.own.get(queue, self.home)

    def spread(self, queues: Collection[str]) -> list[str]:
        """The queues (of ``queues``) whose keys would spread over several Cluster slots: no hash tag in their
        prefix (our queue names hold none)."""
        return [queue for queue in sorted(queues) if not prefix_pins_one_slot(self.of(queue))]


def as_prefixes(value: QueuePrefixes | str) -> QueuePrefixes:
    """``value``; a str is one prefix for every queue and our own keys."""
    return value if isinstance(value, QueuePrefixes) else QueuePrefixes(value)


def open_cluster(nodes: tuple[Endpoint, ...], max_connections: int, options: Mapping[str, Any]) -> redis_asyncio.Redis:
    """A Cluster client seeded with ``nodes`` (it discovers the rest and follows failovers and MOVED replies);
    ``max_connections`` is per node.

    Typed as ``redis.asyncio.Redis``: ``RedisCluster`` offers the same command methods, pipelines (one slot per
    transaction) and ``register_script``, which is all our adapters and bullmq use."""
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        max_connections=max_connections,
        require_full_coverage=True,
        **options,
    )
    return cast(redis_asyncio.Redis, client)


def is_cluster(client: object) -> bool:
    """Whether ``client`` came from :func:`open_cluster` (typed as ``Redis`` there)."""
    return isinstance(client, RedisCluster)


async def info_of_every_node(client: redis_asyncio.Redis, section: str) -> list[Mapping[str, Any]]:
    """``INFO section`` of the one server, or of every node of a Cluster (a replica may become its master)."""
    if not is_cluster(client):
        return [await client.info(section)]
    replies = await cast(RedisCluster, client).info(section, target_nodes=RedisCluster.ALL_NODES)
    return list(cast(Mapping[str, Mapping[str, Any]], replies).values())


def open_sentinel_master(
    sentinels: tuple[Endpoint, ...], master: str, max_connections: int, options: Mapping[str, Any]
) -> redis_asyncio.Redis:
    """A client of the master Sentinel names ``master``: it asks the sentinels again after a connection to the old
    master fails, so a failover needs no restart."""
    sentinel_options = {name: value for name, value in options.items() if name in SENTINEL_OPTIONS}
    watch = Sentinel(list(sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]  # untyped in redis-py
    client: redis_asyncio.Redis = watch.master_for(master, max_connections=max_connections, **options)
    return client


class _ScriptingClusterPipeline(ClusterPipeline):
    """redis-py refuses EVALSHA in every cluster pipeline, since it cannot load a script missing on the node
    mid-pipeline; a transaction touches one slot, hence one node, and :func:`transaction` callers load the
    scripts and retry on NOSCRIPT themselves."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: EncodableT) -> Awaitable[ClusterPipeline]:
        """Queue EVALSHA. Returns an awaitable of the pipeline, as redis-py's ``AsyncScript`` awaits what
        ``evalsha`` returns (awaiting a ``ClusterPipeline`` itself would re-initialize it and drop the queue)."""
        self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        return _queued(self)


async def _queued(pipeline: ClusterPipeline) -> ClusterPipeline:
    return pipeline


def transaction(client: redis_asyncio.Redis) -> Pipeline:
    """A MULTI/EXEC pipeline on ``client``; on a Cluster its keys must share one slot, and a Lua script in it must
    be loaded on that node first (a ``NoScriptError`` says it is not: ``SCRIPT LOAD`` it, then run again)."""
    if is_cluster(client):
        scripting = _ScriptingClusterPipeline(cast(RedisCluster, client), transaction=True)  # type: ignore[abstract]  # redis-py sets it in __init__
        return cast(Pipeline, scripting)
    return client.pipeline(transaction=True)
