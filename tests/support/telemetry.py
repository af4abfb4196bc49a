"""Telemetry test helpers: jobs added by the real npm producer with BullMQ telemetry on, consumed by a plain PyPI
bullmq worker or by our ``run_worker`` in the test's loop."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bullmq import Job as BullJob
from bullmq import Worker

from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.observability.metrics import MetricsRecorder
from domain.jobs import Job, JobName, QueueName, SnapshotJob
from domain.outcomes import Outcome, Published
from entrypoints.worker import ShutdownSignals, run_worker

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"
SnapshotHandler = Callable[[SnapshotJob], Awaitable[Outcome]]


async def node_add_with_telemetry(prefix: str, queue: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Add one job from Node with BullMQ telemetry on; the producer span's ids and the stored ``tm``."""
    command = {"redis": {"host": "127.0.0.1", "port": 6379}, "prefix": prefix, "queue": queue, "name": name}
    process = await asyncio.create_subprocess_exec(
        "node",
        "otel_producer.js",
        json.dumps({**command, "data": data}),
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    produced: dict[str, Any] = json.loads(stdout)
    return produced


async def consume_one(prefix: str, queue: str, handle: Any) -> None:
    """Run a real PyPI bullmq Worker until it has processed one job with ``handle(job)``."""
    done = asyncio.Event()

    async def process(job: BullJob, _token: str) -> dict[str, bool]:
        try:
            handle(job)
        finally:
            done.set()
        return {"ok": True}

    worker = Worker(queue, process, {"connection": "redis://127.0.0.1:6379", "prefix": prefix})
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await worker.close()


def snapshot_handlers(snapshot: SnapshotHandler) -> dict[JobName, Handler]:
    """The snapshots queue's handlers with ``snapshot`` for its jobs (the others publish nothing)."""

    async def handle(job: Job) -> Outcome:
        assert isinstance(job, SnapshotJob)
        return await snapshot(job)

    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    return {JobName.SNAPSHOT: handle, JobName.FAN_OUT_SNAPSHOTS: fan_out, JobName.MAINTAIN_QUEUES: fan_out}


class RunningWorker:
    """``run_worker`` for the snapshots queue as a task of this loop, with the given recorder."""

    def __init__(self, prefix: str, handlers: Mapping[JobName, Handler], recorder: MetricsRecorder) -> None:
        self.signals = ShutdownSignals()
        config = WorkerConfig(queue=QueueName.SNAPSHOTS, prefix=prefix, concurrency=4)
        self.task = asyncio.ensure_future(run_worker(config, handlers, self.signals, recorder))

    async def stop(self) -> int:
        self.signals.stop.set()
        return await asyncio.wait_for(self.task, 30)
