"""The pipelined connection the worker finishes jobs over (``adapters/bullmq/pipelined.py``), against real Redis:
replies matched to their commands, errors as redis-py raises them, a lost or silent connection failing what is in
flight and the next command reconnecting; and a worker whose pipelined connection fails still completing its jobs
through the pool."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import pathlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.bullmq import runtime
from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.pipelined import PipelinedRedis, open_pipelined_redis
from adapters.bullmq.worker_config import WorkerConfig
from domain.jobs import QueueName
from tests.integration.bullmq.test_patched_worker import QUEUE, SNAPSHOT, completed, handlers
from tests.support.queues import OwnRedis, eventually, free_port, inspect, node, worker_running


@pytest.fixture
async def own_redis(tmp_path: pathlib.Path) -> AsyncIterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def lane(own_redis: OwnRedis) -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(RedisSettings(port=own_redis.port))
    yield client
    await client.aclose()


async def test_concurrent_commands_get_their_own_replies_over_one_connection(lane: PipelinedRedis) -> None:
    key = f"test-{uuid.uuid4().hex}"
    await lane.execute_command("SET", f"{key}:text", "not a number")

    async def command(i: int) -> object:
        if i % 7 == 0:
            try:
                return await lane.execute_command("INCR", f"{key}:text")
            except ResponseError as error:
                return type(error)
        return await lane.execute_command("ECHO", f"reply {i}")

    replies = await asyncio.gather(*(command(i) for i in range(300)))

    assert replies == [ResponseError if i % 7 == 0 else f"reply {i}" for i in range(300)]
    ids = await asyncio.gather(*(lane.execute_command("CLIENT", "ID") for _ in range(20)))
    assert len(set(ids)) == 1


async def test_a_script_unknown_to_redis_is_loaded_and_run(own_redis: OwnRedis, lane: PipelinedRedis) -> None:
    pooled = redis_asyncio.Redis(port=own_redis.port, decode_responses=True)
    try:
        script = pooled.register_script("return ARGV[1] .. KEYS[1]")
        assert await script(["k"], ["v"], lane) == "vk"  # NOSCRIPT (never loaded) -> SCRIPT LOAD -> EVALSHA
        await pooled.script_flush()
        assert await script(["k"], ["w"], lane) == "wk"
    finally:
        await pooled.aclose()


async def test_a_killed_connection_fails_what_is_in_flight_and_the_next_command_reconnects(
    own_redis: OwnRedis, lane: PipelinedRedis
) -> None:
    lane_id = await lane.execute_command("CLIENT", "ID")
    blocked = asyncio.ensure_future(lane.execute_command("BLPOP", f"test-{uuid.uuid4().hex}", 5))
    await asyncio.sleep(0.2)
    admin = redis_asyncio.Redis(port=own_redis.port)
    try:
        await admin.client_kill_filter(_id=lane_id)
    finally:
        await admin.aclose()

    with pytest.raises(RedisConnectionError):
        await blocked
    assert await lane.execute_command("PING") == "PONG"
    assert await lane.execute_command("CLIENT", "ID") != lane_id


async def test_a_server_that_never_answers_times_out_and_is_dropped() -> None:
    accepted: list[asyncio.StreamReader] = []

    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lane = PipelinedRedis(RedisSettings(port=port), timeout_s=0.2)
    try:
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(lane.execute_command("PING"), 10)
        (reader,) = accepted
        assert await asyncio.wait_for(reader.read(), 5) == b"*1\r\n$4\r\nPING\r\n"  # then the lane hung up
    finally:
        await lane.aclose()
        server.close()
        await server.wait_closed()


async def test_no_server_is_a_connection_error() -> None:
    lane = PipelinedRedis(RedisSettings(port=free_port()))
    with pytest.raises(RedisConnectionError):
        await lane.execute_command("PING")


async def test_commands_waiting_on_a_failed_connect_fail_at_once_instead_of_each_trying_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lane = PipelinedRedis(RedisSettings(port=free_port()))
    attempts: list[None] = []
    open_connection = lane._open

    async def counted() -> object:
        attempts.append(None)
        return await open_connection()

    monkeypatch.setattr(lane, "_open", counted)

    results = await asyncio.gather(*(lane.execute_command("PING") for _ in range(20)), return_exceptions=True)

    assert all(isinstance(result, RedisConnectionError) for result in results)
    assert len(attempts) == 1


async def test_it_selects_the_database_of_the_settings(own_redis: OwnRedis) -> None:
    lane = PipelinedRedis(RedisSettings(port=own_redis.port, db=3))
    reader = redis_asyncio.Redis(port=own_redis.port, db=3, decode_responses=True)
    try:
        await lane.execute_command("SET", "where", "db 3")
        assert await reader.get("where") == "db 3"
    finally:
        await lane.aclose()
        await reader.aclose()


def test_only_a_plain_single_server_gets_one() -> None:
    assert open_pipelined_redis(RedisSettings()) is not None
    assert open_pipelined_redis(RedisSettings(tls=True)) is None
    assert open_pipelined_redis(RedisSettings(sentinels=(("127.0.0.1", 26379),))) is None
    assert open_pipelined_redis(RedisSettings(cluster_nodes=(("127.0.0.1", 7000),))) is None


async def test_a_worker_whose_pipelined_connection_fails_completes_its_jobs_through_the_pool(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_port = free_port()
    monkeypatch.setattr(
        runtime, "open_pipelined_redis", lambda _settings: PipelinedRedis(RedisSettings(port=dead_port))
    )
    jobs = 30
    await node("add", prefix, QUEUE, jobs=[SNAPSHOT] * jobs)
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix, concurrency=5)

    async with worker_running(config, handlers()):
        await eventually(lambda: completed(prefix, jobs), within=30)

    states = [await inspect(prefix, QUEUE, str(i)) for i in (1, jobs)]
    assert [(job["state"], job["attemptsMade"]) for job in states] == [("completed", 1), ("completed", 1)]


async def test_jobs_arriving_at_an_idle_worker_are_fetched_over_the_one_connection(
    prefix: str, own_redis: OwnRedis
) -> None:
    """Each job trickled to an idle worker of concurrency 10 sets off a ``moveToActive`` per free slot (bullmq's run
    loop, as npm bullmq's); all of them go over the pipelined connection, none through the pool (where each waited
    for a connection of its own and stamped its job's ``processedOn`` before Redis ran it)."""
    port, jobs = own_redis.port, 15
    config = WorkerConfig(queue=QueueName.SNAPSHOTS, redis=RedisSettings(port=port), prefix=prefix, concurrency=10)
    senders: collections.Counter[int] = collections.Counter()

    async def watch(ready: asyncio.Event) -> None:
        client = redis_asyncio.Redis(port=port)
        try:
            async with client.monitor() as monitor:
                ready.set()
                async for command in monitor.listen():
                    argv = command["command"].split(" ")
                    if argv[0] == "EVALSHA" and argv[2] == "11":  # moveToActive-11.lua: the only 11-key script
                        senders[command["client_port"]] += 1
        finally:
            await client.aclose()

    async with worker_running(config, handlers()):
        await asyncio.sleep(0.5)  # idle: drained, blocked on the marker
        ready = asyncio.Event()
        watcher = asyncio.ensure_future(watch(ready))
        await asyncio.wait_for(ready.wait(), 5)
        await node("trickle", prefix, QUEUE, port, count=jobs, intervalMs=20, **SNAPSHOT)
        await eventually(lambda: completed(prefix, jobs, port), within=30)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert sum(senders.values()) >= jobs
    assert len(senders) == 1, f"moveToActive came over {len(senders)} connections"
