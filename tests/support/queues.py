"""Helpers for the BullMQ integration tests: the npm bullmq CLI, key clean-up, polling, a test-owned Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as redis_asyncio

from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.scheduling.schedules import Schedule
from domain.jobs import JobName
from entrypoints.worker import ShutdownSignals, run_worker

ROOT = pathlib.Path(__file__).resolve().parents[2]
NODE_CLI = ROOT / "tests" / "node" / "bullmq_cli.js"


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


async def node(op: str, prefix: str, queue: str, port: int = 6379, **fields: Any) -> Any:
    """Run one command of tests/node/bullmq_cli.js and return its JSON answer."""
    command = {"op": op, "prefix": prefix, "queue": queue, "redis": {"host": "127.0.0.1", "port": port}, **fields}
    process = await asyncio.create_subprocess_exec(
        "node", str(NODE_CLI), json.dumps(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def add(prefix: str, queue: str, name: str, data: Any, port: int = 6379, **opts: Any) -> str:
    answer = await node("add", prefix, queue, port, jobs=[{"name": name, "data": data, "opts": opts}])
    job_id: str = answer["ids"][0]
    return job_id


async def inspect(prefix: str, queue: str, job_id: str, port: int = 6379) -> dict[str, Any]:
    job: dict[str, Any] = (await node("inspect", prefix, queue, port, ids=[job_id]))["jobs"][0]
    return job


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0, every: float = 0.1) -> None:
    """Poll ``check`` until it returns True; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(every)


async def state_of(prefix: str, queue: str, job_id: str, port: int = 6379) -> str:
    """The job's state read straight from Redis (cheaper than a Node round trip for polling)."""
    client = redis_asyncio.Redis(port=port, decode_responses=True)
    try:
        key = f"{prefix}:{queue}"
        for state in ("completed", "failed", "delayed"):
            if await client.zscore(f"{key}:{state}", job_id) is not None:
                return state
        if job_id in await client.lrange(f"{key}:active", 0, -1):
            return "active"
        return "waiting-or-unknown"
    finally:
        await client.aclose()


async def delete_keys(prefix: str, port: int = 6379) -> None:
    client = redis_asyncio.Redis(port=port)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def worker_running(
    config: WorkerConfig, handlers: Mapping[JobName, Handler], schedules: Sequence[Schedule] = ()
) -> AsyncIterator[ShutdownSignals]:
    """Run ``run_worker`` in this event loop (keeping ``schedules``); on exit stop it and check it exited 0."""
    signals = ShutdownSignals()
    task = asyncio.ensure_future(run_worker(config, handlers, signals, schedules=schedules))
    try:
        yield signals
    finally:
        signals.stop.set()
        code = await asyncio.wait_for(task, 30)
    assert code == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OwnRedis:
    """A redis-server of the test's own on a free loopback port, persisting with an fsync'd AOF."""

    def __init__(self, directory: pathlib.Path, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", *self.extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            assert time.monotonic() < deadline, "own redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def worker_process(output: pathlib.Path | None = None, **config: Any) -> subprocess.Popen[bytes]:
    """Start tests/support/worker_app.py as its own process (for signal and crash tests). Its output goes to the
    file ``output``, or to an unnamed temporary file: a pipe nobody reads fills up and blocks the worker on its next
    log line."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_app", json.dumps(config)],
        cwd=ROOT,
        stdout=output.open("wb") if output else tempfile.TemporaryFile(),
        stderr=subprocess.STDOUT,
    )
