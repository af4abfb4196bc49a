"""The health server against a real system: Redis (a test-owned server we can stop), PostgreSQL, heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest
from bullmq import Queue, Worker
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from adapters.bullmq.heartbeat import Heartbeat
from adapters.health.probe import HealthProbe
from adapters.health.server import build_health_app, running_health_server
from adapters.observability.metrics import MetricsRecorder
from adapters.scheduling.status_store import record_schedule_status

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
QUEUES = ("reminders", "nurture", "dunning", "snapshots")
PREFIX = "cfhealth"
ROOT = pathlib.Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@attrs.define
class OwnRedis:
    """A redis-server of this test module on a free loopback port, stopped and restarted at will."""

    directory: pathlib.Path
    port: int = attrs.field(factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@attrs.define
class System:
    redis: Redis
    base_url: str
    session: aiohttp.ClientSession
    stop_heartbeats: asyncio.Event

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base_url + path) as response:
            body = await response.read()
            is_json = response.content_type == "application/json"
            return response.status, json.loads(body) if is_json else body


@contextlib.asynccontextmanager
async def _health_system(own_redis: OwnRedis, **probe_options: Any) -> AsyncIterator[System]:
    """A health server over the test Redis and PostgreSQL, with one heartbeating worker per queue."""
    if own_redis.process is None:
        own_redis.start()
    client = Redis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)
    await client.flushdb()  # our own server: nobody else's keys live here
    probe = HealthProbe(
        **{
            "redis": client,
            "database_dsn": POSTGRES_DSN,
            "prefixes": PREFIX,
            "queues": QUEUES,
            "required_queues": QUEUES,
            "timeout_seconds": 1.0,
            **probe_options,
        }
    )
    stop = asyncio.Event()
    beats = [
        asyncio.create_task(Heartbeat(client, PREFIX, q, f"{q}-w1", interval_seconds=0.2, ttl_seconds=1.0).run(stop))
        for q in QUEUES
    ]
    async with running_health_server(build_health_app(probe), "127.0.0.1", 0) as port, aiohttp.ClientSession() as s:
        try:
            yield System(client, f"http://127.0.0.1:{port}", s, stop)
        finally:
            stop.set()
            await asyncio.gather(*beats)
            await client.aclose()


async def _wait_until(condition: Any, what: str, attempts: int = 100) -> None:
    """Poll an async condition (a bounded number of times) until it holds."""
    for _ in range(attempts):
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"never became true: {what}")


async def _populate(own_redis: OwnRedis, client: Redis) -> None:
    """Jobs in several states, one completed with BullMQ metrics on, a dead letter, a schedule, counters."""
    connection = {"connection": own_redis.url, "prefix": PREFIX}
    reminders = Queue("reminders", connection)
    await reminders.add("process-reminder", {"orgId": "o1"}, {})
    await reminders.add("process-reminder", {"orgId": "o1"}, {})
    await reminders.add("process-reminder", {"orgId": "o1"}, {"delay": 3_600_000})
    await reminders.close()
    dead_letter = Queue("dead-letter", connection)
    await dead_letter.add("process-dunning", {"sourceQueue": "dunning"}, {})
    await dead_letter.close()
    snapshots = Queue("snapshots", connection)
    await snapshots.add("process-snapshots", {"orgId": "o1", "date": "2025-07-01"}, {})
    await snapshots.close()
    done = asyncio.Event()

    async def process(_job: Any, _token: str) -> dict[str, bool]:
        done.set()
        return {"ok": True}

    worker = Worker("snapshots", process, {**connection, "metrics": {"maxDataPoints": 60}})
    await asyncio.wait_for(done.wait(), 30)
    await worker.close()
    seconds, _ = await client.time()
    now = datetime.fromtimestamp(seconds, tz=UTC)
    await record_schedule_status(
        client,
        PREFIX,
        "hourly-reminder-scan",
        {
            "pattern": "0 * * * *",
            "tz": "UTC",
            "next_run": now + timedelta(minutes=30),
            "last_started": now - timedelta(minutes=30),
            "last_finished": now - timedelta(minutes=29),
            "last_outcome": "ok",
            "jobs_queued": 12,
        },
    )
    recorder = MetricsRecorder(PREFIX)
    recorder.job_finished("snapshots", "process-snapshots", "completed", wait_seconds=0.1, run_seconds=0.01)
    await recorder.flush(client)


def _metric(text: bytes, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise KeyError(name, labels)


async def test_each_endpoint_on_a_healthy_system(own_redis: OwnRedis) -> None:
    """Live, ready, queues, scheduler, /metrics and /metrics.json all answer 200 with the system's facts."""
    async with _health_system(own_redis) as system:
        await _populate(own_redis, system.redis)

        assert await system.get("/health/live") == (200, {"status": "ok"})
        status, ready = await system.get("/health/ready")
        assert status == 200
        assert ready["checks"] == {"redis": "ok", "postgres": "ok", "workers": dict.fromkeys(QUEUES, 1)}

        status, queues = await system.get("/health/queues")
        assert status == 200
        by_name = {q["name"]: q for q in queues["queues"]}
        assert by_name["reminders"]["counts"]["wait"] == 2
        assert by_name["reminders"]["counts"]["delayed"] == 1
        assert by_name["reminders"]["workers"] == 1
        assert by_name["reminders"]["oldest_waiting_age_seconds"] >= 0
        assert by_name["nurture"]["oldest_waiting_age_seconds"] is None
        assert by_name["snapshots"]["counts"]["completed"] == 1
        assert by_name["snapshots"]["completed_per_minute"] == pytest.approx(1 / 5)
        assert by_name["reminders"]["completed_per_minute"] is None  # no BullMQ metrics recorded there
        assert queues["dead_letter_size"] == 1

        status, scheduler = await system.get("/health/scheduler")
        assert status == 200
        (schedule,) = scheduler["schedules"]
        assert schedule["name"] == "hourly-reminder-scan"
        assert schedule["pattern"] == "0 * * * *"
        assert schedule["last_outcome"] == "ok"
        assert schedule["jobs_queued"] == 12
        assert schedule["problem"] is None

        status, text = await system.get("/metrics")
        assert status == 200
        assert _metric(text, "clientflow_dependency_up", dependency="redis") == 1
        assert _metric(text, "clientflow_dependency_up", dependency="postgres") == 1
        assert _metric(text, "clientflow_queue_jobs", queue="reminders", state="wait") == 2
        assert _metric(text, "clientflow_queue_workers", queue="dunning") == 1
        assert _metric(text, "clientflow_queue_waiting_age_limit_seconds", queue="reminders") == 300
        assert _metric(text, "clientflow_queue_waiting_age_limit_seconds", queue="nurture") == 900
        assert _metric(text, "clientflow_dead_letter_jobs") == 1
        assert _metric(text, "clientflow_queue_finished_per_minute", queue="snapshots", state="completed") == 0.2
        assert _metric(text, "clientflow_schedule_last_run_succeeded", schedule="hourly-reminder-scan") == 1
        job = {"queue": "snapshots", "job_name": "process-snapshots"}
        assert _metric(text, "clientflow_jobs_total", **job, outcome="completed") == 1

        status, as_json = await system.get("/metrics.json")
        assert status == 200
        assert as_json["dependencies"] == {"redis": "up", "postgres": "up"}
        assert as_json["dead_letter_size"] == 1


async def test_redis_stopped_then_recovered(own_redis: OwnRedis) -> None:
    """With Redis stopped every Redis-backed endpoint answers 503 naming Redis; after a restart all recover."""
    async with _health_system(own_redis) as system:
        await _wait_until(lambda: _status_is(system, "/health/ready", 200), "ready before the stop")
        own_redis.stop()

        status, ready = await system.get("/health/ready")
        assert status == 503
        assert ready["status"] == "unhealthy"
        assert ready["reason"] == "redis unreachable"
        assert ready["checks"]["postgres"] == "ok"
        for path in ("/health/queues", "/health/scheduler"):
            assert await system.get(path) == (503, {"status": "unhealthy", "reason": "redis unreachable"})
        assert await system.get("/health/live") == (200, {"status": "ok"})
        status, text = await system.get("/metrics")
        assert status == 200
        assert _metric(text, "clientflow_dependency_up", dependency="redis") == 0

        own_redis.start()
        await _wait_until(lambda: _status_is(system, "/health/ready", 200), "ready after the restart")
        status, queues = await system.get("/health/queues")
        assert status == 200
        assert {q["name"]: q["workers"] for q in queues["queues"]} == dict.fromkeys(QUEUES, 1)


async def _status_is(system: System, path: str, expected: int) -> bool:
    status, _ = await system.get(path)
    return status == expected


async def test_missing_worker_and_unreachable_postgres_are_named(own_redis: OwnRedis) -> None:
    """Readiness names the queue with no live worker and an unreachable PostgreSQL, without the DSN."""
    closed = f"postgresql://postgres:hunter2pass@127.0.0.1:{_free_port()}/test"
    async with _health_system(own_redis, required_queues=(*QUEUES, "reports"), database_dsn=closed) as system:
        await _wait_until(lambda: _workers_seen(system), "heartbeats written")
        status, ready = await system.get("/health/ready")
    assert status == 503
    assert ready["reason"] == "postgres unreachable; no worker heartbeating for queue reports"
    assert "hunter2pass" not in json.dumps(ready)


async def _workers_seen(system: System) -> bool:
    _, ready = await system.get("/health/ready")
    return bool(ready["checks"].get("workers", {}).get("reminders"))


async def test_a_stopped_worker_leaves_readiness_at_once(own_redis: OwnRedis) -> None:
    """A worker that shuts down removes its heartbeat, so readiness names its queue without waiting for the TTL."""
    async with _health_system(own_redis) as system:
        await _wait_until(lambda: _status_is(system, "/health/ready", 200), "ready")
        system.stop_heartbeats.set()
        await _wait_until(lambda: _status_is(system, "/health/ready", 503), "not ready")
        _, ready = await system.get("/health/ready")
    assert ready["reason"].startswith("no worker heartbeating for queue reminders")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"next_run": datetime(2020, 1, 1, tzinfo=UTC), "last_outcome": "ok"}, "schedule daily-snapshots overdue"),
        ({"last_outcome": "failed"}, "schedule daily-snapshots last run failed"),
    ],
)
async def test_scheduler_problems_answer_503(own_redis: OwnRedis, fields: dict[str, Any], reason: str) -> None:
    """An overdue schedule (its next run long past) or a failed last run makes /health/scheduler unhealthy."""
    async with _health_system(own_redis) as system:
        await record_schedule_status(system.redis, PREFIX, "daily-snapshots", {"pattern": "0 1 * * *", **fields})
        status, body = await system.get("/health/scheduler")
    assert status == 503
    assert body["reason"] == reason
    assert body["schedules"][0]["problem"] == reason


@pytest.mark.slow
def test_entrypoint_serves_and_exits_0_on_sigterm(own_redis: OwnRedis) -> None:
    """``python -m entrypoints.health`` logs its port as JSON, answers liveness, and stops cleanly on SIGTERM."""
    if own_redis.process is None:
        own_redis.start()
    arguments = ["--database-url", POSTGRES_DSN, "--prefix", PREFIX]
    arguments += ["--queues", "reminders", "--required-queues", "", "--port", "0", "--production"]
    process = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.health", *arguments],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": own_redis.url},
    )
    try:
        assert process.stderr is not None
        line = json.loads(process.stderr.readline())
        assert line["event"] == "health server listening"
        assert line["host"] == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", line["port"]), timeout=5) as conn:
            conn.sendall(b"GET /health/ready HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: conn.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.0 200")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@attrs.define
class _RedisLostAfterPing(HealthProbe):
    """A probe whose ping answered just before Redis went away: every read after it fails."""

    async def check_redis(self) -> None:
        return None


async def test_metrics_survive_redis_lost_between_ping_and_reads() -> None:
    """/metrics reports Redis down (dependency gauge 0) instead of failing when Redis vanishes after the ping."""
    gone = Redis(host="127.0.0.1", port=_free_port(), socket_timeout=1, socket_connect_timeout=1)
    probe = _RedisLostAfterPing(gone, POSTGRES_DSN, PREFIX, QUEUES, QUEUES, timeout_seconds=1.0)
    app = build_health_app(probe)
    async with (
        running_health_server(app, "127.0.0.1", 0) as port,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        status, text = response.status, await response.read()
    await gone.aclose()
    assert status == 200
    assert _metric(text, "clientflow_dependency_up", dependency="redis") == 0
    assert _metric(text, "clientflow_dependency_up", dependency="postgres") == 1
