"""How our workers show up to Node tooling: one Redis connection per worker, named as npm ``bullmq`` names it.

npm ``bullmq`` 6.7.0 (``utils/create-backend.js``, ``createBlockingConnection``) gives a Worker a dedicated blocking
connection named ``<prefix>:<base64(queue name)>`` (plus ``:w:<worker name>`` when the worker has a ``name``
option); its main connection stays unnamed. ``Queue.getWorkers()`` (``classes/queue-getters.js``) reads
``CLIENT LIST`` and keeps the clients whose name is exactly ``<prefix>:<base64>`` or starts with
``<prefix>:<base64>:w:``, so a Node worker counts once. The base64 is of the queue name's UTF-8 bytes, standard
alphabet with padding (``Buffer.from(name).toString('base64')``).

PyPI ``bullmq`` 3.4.4 names its connections ``<prefix>:<queue>`` (no base64: Node never matches it) and, given our
pooled client, sets that name on the whole pool, so one Python worker would count once per pooled connection. We
do as Node does: the worker's blocking wait (``BZPOPMIN``) gets its own single-connection client, named at connect
time through redis-py's ``client_name`` (so a reconnection after a Redis restart is named again), and the pool that
runs every other command stays unnamed. One worker process = one entry in ``getWorkers()``, as with Node.
"""

from __future__ import annotations

import base64
from typing import Any

import redis.asyncio as redis_asyncio
from bullmq.redis_connection import RedisConnection

from adapters.bullmq.connection import RedisSettings, open_redis


def node_worker_client_name(prefix: str, queue: str, worker_name: str | None = None) -> str:
    """``<prefix>:<base64(utf-8 queue)>[:w:<worker_name>]``, the name npm bullmq 6.7.0 gives a Worker's connection."""
    encoded = base64.b64encode(queue.encode("utf-8")).decode("ascii")
    return f"{prefix}:{encoded}" + (f":w:{worker_name}" if worker_name else "")


def open_blocking_redis(settings: RedisSettings, client_name: str) -> redis_asyncio.Redis:
    """One named connection for the worker's blocking wait; close it with ``close_redis``."""
    return open_redis(settings, concurrency=0, client_name=client_name, single_connection=True)


def use_blocking_client(worker: Any, client: redis_asyncio.Redis) -> None:
    """Make a bullmq ``Worker`` wait for jobs on ``client`` instead of on its (pooled) main connection.

    PyPI bullmq 3.4.4 builds the worker's blocking connection from the same client as its main one; replacing
    ``backend.blocking_connection`` before the worker runs is what its ``bclient`` then reads.
    """
    connection = RedisConnection(client)
    worker.backend.blocking_connection = connection
    worker.blockingRedisConnection = connection
    worker.bclient = client
