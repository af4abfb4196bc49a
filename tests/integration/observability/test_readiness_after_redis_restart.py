"""Readiness right after a Redis restart: the health server's pooled connection died with the old server, and the
first probe after the restart must not report that dead connection as "redis unreachable"."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from adapters.bullmq.connection import RedisSettings
from adapters.health.probe import HealthProbe
from entrypoints.health import open_probe_redis

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
OUR_PORTS = range(7400, 7500)
"""This project's helpers share one machine: a test's own servers use this range (or an ephemeral port)."""


def _port() -> int:
    for port in OUR_PORTS:
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RestartableRedis:
    """A redis-server of this test only, restarted on the same port (never the shared one)."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.port = _port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(argv, cwd=self.directory, stdout=subprocess.DEVNULL)
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


@pytest.fixture
def redis_server(tmp_path: pathlib.Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_first_probe_after_a_redis_restart_is_ready(redis_server: RestartableRedis) -> None:
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
