"""The worker as a process: signals, SIGKILL recovery, a Redis restart, and delayed jobs after a long idle."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import subprocess
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from domain.jobs import Job, JobName, QueueName, SnapshotJob
from domain.outcomes import Outcome, Published, SnapshotStored
from tests.support.queues import (
    OwnRedis,
    add,
    delete_keys,
    eventually,
    inspect,
    node,
    state_of,
    worker_process,
    worker_running,
)

QUEUE = str(QueueName.SNAPSHOTS)
DELAY_MS = 3000


def snapshot(org: str) -> dict[str, str]:
    return {"orgId": org, "date": "2025-07-01"}


async def list_of(prefix: str, name: str, port: int = 6379) -> list[str]:
    client = redis_asyncio.Redis(port=port, decode_responses=True)
    try:
        return list(await client.lrange(f"{prefix}:test:{name}", 0, -1))
    finally:
        await client.aclose()


async def exit_code(process: subprocess.Popen[bytes], within: float = 30) -> int:
    loop = asyncio.get_running_loop()
    code = await asyncio.wait_for(loop.run_in_executor(None, process.wait), within)
    return int(code)


@pytest.mark.slow
async def test_sigterm_lets_jobs_in_flight_complete_and_exits_zero(prefix: str) -> None:
    """SIGTERM while four jobs run: all four complete, nothing new is taken, the process exits 0."""
    worker = worker_process(prefix=prefix, job_seconds=1.5, concurrency=4)
    try:
        await node(
            "add", prefix, QUEUE, jobs=[{"name": "process-snapshots", "data": snapshot(f"o{i}")} for i in range(6)]
        )
        await eventually(lambda: _has(prefix, "started", 4))
        worker.send_signal(signal.SIGTERM)
        code = await exit_code(worker)
    finally:
        worker.kill()
    counts = (await node("counts", prefix, QUEUE))["counts"]
    assert code == 0
    assert len(await list_of(prefix, "done")) == 4
    assert (counts["completed"], counts["active"], counts["waiting"]) == (4, 0, 2)


@pytest.mark.slow
async def test_second_sigterm_forces_the_close_and_still_exits_zero(prefix: str, tmp_path: pathlib.Path) -> None:
    """A second SIGTERM during the drain leaves at once with exit 0 (the job in flight and the grace period would
    hold it a minute); the unfinished job stays active for recovery."""
    output = tmp_path / "worker.log"
    hold = {"job_seconds": 60, "grace_period_s": 120, "lock_duration_ms": 300_000}
    worker = worker_process(output, prefix=prefix, concurrency=1, **hold)
    try:
        job_id = await add(prefix, QUEUE, "process-snapshots", snapshot("o1"))
        await eventually(lambda: _has(prefix, "started", 1))
        worker.send_signal(signal.SIGTERM)
        await eventually(lambda: _logged(output, "shutdown_requested"))  # two signals sent at once may arrive as one
        worker.send_signal(signal.SIGTERM)
        code = await exit_code(worker, within=30)
    finally:
        worker.kill()
    assert code == 0
    assert await _logged(output, "shutdown_forced_by_signal")
    assert await state_of(prefix, QUEUE, job_id) == "active"


@pytest.mark.slow
async def test_job_of_a_sigkilled_worker_is_completed_by_another_after_its_lock_expires(prefix: str) -> None:
    """SIGKILL mid-job: a second worker recovers the job through the stalled check and completes it."""
    short_locks = {"lock_duration_ms": 2000, "stalled_interval_ms": 1000, "grace_period_s": 0.5}
    first = worker_process(prefix=prefix, job_seconds=30, **short_locks)
    second = None
    try:
        job_id = await add(prefix, QUEUE, "process-snapshots", snapshot("o1"))
        await eventually(lambda: _has(prefix, "started", 1))
        first.send_signal(signal.SIGKILL)
        await exit_code(first)
        second = worker_process(prefix=prefix, job_seconds=0.1, **short_locks)
        await eventually(lambda: _has(prefix, "done", 1), within=20)
        await eventually(lambda: _state(prefix, job_id, "completed"))
        second.send_signal(signal.SIGTERM)
        assert await exit_code(second) == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()
    done = await list_of(prefix, "done")
    assert done == [f"o1:{second.pid}"]


@pytest.mark.slow
async def test_a_job_interrupted_twice_is_completed_not_failed_as_stalled(prefix: str) -> None:
    """Two workers SIGKILLed in turn mid-job (stalls, not attempts): the third completes it; with bullmq's default
    stall limit of 1 the second stall would fail it "stalled more than allowable limit" and dead-letter it."""
    short_locks = {"lock_duration_ms": 2000, "stalled_interval_ms": 1000, "grace_period_s": 0.5}
    killed = []
    last = None
    try:
        job_id = await add(prefix, QUEUE, "process-snapshots", snapshot("o1"))
        for started in (1, 2):
            worker = worker_process(prefix=prefix, job_seconds=30, **short_locks)
            killed.append(worker)
            await eventually(lambda n=started: _has(prefix, "started", n), within=60)
            worker.send_signal(signal.SIGKILL)
            await exit_code(worker)
        last = worker_process(prefix=prefix, job_seconds=0.1, **short_locks)
        await eventually(lambda: _has(prefix, "done", 1), within=60)
        await eventually(lambda: _state(prefix, job_id, "completed"))
        last.send_signal(signal.SIGTERM)
        assert await exit_code(last) == 0
    finally:
        for worker in [*killed, *([last] if last else [])]:
            worker.kill()
    assert await list_of(prefix, "done") == [f"o1:{last.pid}"]


@pytest.fixture
async def own_redis(tmp_path: pathlib.Path) -> AsyncIterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
async def test_worker_reconnects_after_a_redis_restart_and_loses_nothing(prefix: str, own_redis: OwnRedis) -> None:
    """Redis restarted while jobs run: the worker reconnects by itself and every job completes."""
    port = own_redis.port
    worker = worker_process(prefix=prefix, port=port, job_seconds=0.1, concurrency=2)
    try:
        jobs = [{"name": "process-snapshots", "data": snapshot(f"o{i}")} for i in range(30)]
        await node("add", prefix, QUEUE, port, jobs=jobs)
        await eventually(lambda: _has(prefix, "done", 5, port))
        own_redis.stop()
        await asyncio.sleep(1.0)
        own_redis.start()
        await eventually(lambda: _completed(prefix, 30, port), within=40)
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        code = await exit_code(worker)
    finally:
        worker.kill()
    counts = (await node("counts", prefix, QUEUE, port))["counts"]
    assert code == 0
    assert (counts["completed"], counts["failed"], counts["active"], counts["waiting"]) == (30, 0, 0, 0)
    await delete_keys(prefix, port)


@pytest.mark.slow
async def test_delayed_job_added_to_a_long_idle_worker_starts_within_a_second_of_its_due_time(prefix: str) -> None:
    """After 21 s idle (longer than redis-py's 5 s default socket timeout), a delayed job starts on time."""
    started: list[str] = []

    async def record(job: Job) -> Outcome:
        assert isinstance(job, SnapshotJob)
        started.append(job.org_id)
        return SnapshotStored("2025-07-01")

    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    handlers: dict[JobName, Handler] = {
        JobName.SNAPSHOT: record,
        JobName.FAN_OUT_SNAPSHOTS: fan_out,
        JobName.MAINTAIN_QUEUES: fan_out,
    }
    async with worker_running(WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix), handlers):
        await asyncio.sleep(21)
        job_id = await add(prefix, QUEUE, "process-snapshots", snapshot("o1"), delay=DELAY_MS)
        await eventually(lambda: _state(prefix, job_id, "completed"), within=20)
    job = await inspect(prefix, QUEUE, job_id)
    lateness_ms = job["processedOn"] - (job["timestamp"] + DELAY_MS)  # bullmq resets job.delay once promoted
    assert started == ["o1"]
    assert -50 <= lateness_ms < 1000


async def _has(prefix: str, name: str, count: int, port: int = 6379) -> bool:
    return len(await list_of(prefix, name, port)) >= count


async def _logged(output: pathlib.Path, event: str) -> bool:
    return event in await asyncio.to_thread(output.read_text)


async def _state(prefix: str, job_id: str, state: str) -> bool:
    return await state_of(prefix, QUEUE, job_id) == state


async def _completed(prefix: str, count: int, port: int) -> bool:
    client = redis_asyncio.Redis(port=port)
    try:
        return bool(await client.zcard(f"{prefix}:{QUEUE}:completed") == count)
    except OSError:
        return False
    finally:
        await client.aclose()
