"""Process main for one queue's worker: ``python -m entrypoints.worker --queue reminders``.

Exit codes: 0 after a clean or forced shutdown (SIGTERM/SIGINT), 78 on a configuration problem (start-up checks,
a handler's ConfigurationError), 70 when the runtime itself crashed. The supervisor restarts on non-zero.

Beside the queue's worker the process runs its heartbeat (what /health/ready counts), the flush of its metrics to
Redis, the dead-letter sweep and the schedule keeper (schedules re-asserted while workers run); all stop with the
worker, and the heartbeat is withdrawn on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import redis.asyncio as redis_asyncio
import structlog
import uvloop

from adapters.bullmq.connection import close_redis, open_redis
from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from adapters.bullmq.dead_letter_sweep import DeadLetterSweeper
from adapters.bullmq.heartbeat import Heartbeat
from adapters.bullmq.router import Handler, JobRouter
from adapters.bullmq.runtime import EXIT_CONFIGURATION, EXIT_CRASHED, QueueWorker
from adapters.bullmq.startup_checks import run_startup_checks
from adapters.bullmq.worker_config import WorkerConfig
from adapters.observability.metrics import MetricsRecorder
from adapters.observability.sentry import report_final_failure
from adapters.scheduling.keeper import keep_schedules
from adapters.scheduling.schedules import Schedule
from domain.errors import ConfigurationError, TransientError
from domain.jobs import CONSUMED_QUEUES, JobName, QueueName
from entrypoints.bootstrap import worker_components
from entrypoints.settings import SettingsError

log = structlog.get_logger()


class ShutdownSignals:
    """First SIGTERM/SIGINT sets ``stop`` (drain), a second sets ``force`` (leave now)."""

    def __init__(self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self._signals = signals

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.add_signal_handler(sig, self._received, sig)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)

    def _received(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("shutdown_forced_by_signal", signal=sig.name)
            self.force.set()
        else:
            log.info("shutdown_requested", signal=sig.name)
            self.stop.set()


async def run_worker(
    config: WorkerConfig,
    handlers: Mapping[JobName, Handler],
    signals: ShutdownSignals | None = None,
    recorder: MetricsRecorder | None = None,
    schedules: Sequence[Schedule] = (),
    client: redis_asyncio.Redis | None = None,
) -> int:
    """Consume ``config.queue`` with ``handlers`` until a shutdown signal; return the process exit code.

    With ``signals`` None, SIGTERM/SIGINT handlers are installed on the running loop. ``recorder`` is the process's
    metrics (shared with the adapters that count provider messages); a new one when None. ``schedules`` are
    re-asserted every ``config.schedule_check_interval_s`` while the worker serves. ``client`` is the process's
    Redis client (entrypoints/bootstrap.py), left open; with None the worker opens and closes its own.
    """
    own_signals = signals is None
    signals = signals or ShutdownSignals()
    recorder = recorder or MetricsRecorder(config.prefix)
    own_client = client is None
    if client is None:
        client = open_redis(config.redis, config.concurrency)
    try:
        router = JobRouter(config.queue, handlers)
        await run_startup_checks(client, config.queue_prefix, str(config.queue))
        worker = QueueWorker(config, router, client, recorder)
        if own_signals:
            signals.install()
        try:
            async with _running_beside(config, client, worker, recorder, schedules):
                return await worker.serve(signals.stop, signals.force)
        finally:
            if own_signals:
                signals.remove()
    except ConfigurationError as error:
        log.critical("worker_refused_to_start", queue=str(config.queue), error=str(error))
        return EXIT_CONFIGURATION
    except Exception as error:
        log.critical("worker_crashed", queue=str(config.queue), error_type=type(error).__name__, exc_info=True)
        return EXIT_CRASHED
    finally:
        if own_client:
            await close_redis(client)


class FailedWithoutCopy(Exception):
    """What Sentry is told about a job the dead-letter sweep found failed for good with no copy (its worker died
    before recording it, or a Node worker failed it); the text is the job's ``failedReason``."""


def _report_swept(failed: FailedJob) -> None:
    org_id = failed.data.get("orgId") if isinstance(failed.data, Mapping) else None
    report_final_failure(
        failed.source_queue,
        failed.job_name,
        failed.job_id,
        failed.attempts_made,
        org_id if isinstance(org_id, str) else None,
        FailedWithoutCopy(failed.failed_reason),
    )


def worker_id() -> str:
    """This process among the queue's workers: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@asynccontextmanager
async def _running_beside(
    config: WorkerConfig,
    client: redis_asyncio.Redis,
    worker: QueueWorker,
    recorder: MetricsRecorder,
    schedules: Sequence[Schedule],
) -> AsyncIterator[None]:
    """The heartbeat, the metrics flush, the dead-letter sweep and the schedule keeper, while the worker serves."""
    queue = str(config.queue)
    stop = asyncio.Event()
    heartbeat = Heartbeat(
        client,
        config.prefix,
        queue,
        worker_id=worker_id(),
        interval_seconds=config.heartbeat_interval_s,
        ttl_seconds=3 * config.heartbeat_interval_s,
        details=lambda: {"active_jobs": worker.active_jobs(), "concurrency": config.concurrency},
    )
    sweeper = DeadLetterSweeper(
        client,
        config.prefixes,
        queue,
        BullmqDeadLetter(client, config.prefixes),
        settle_seconds=config.dead_letter_settle_s,
        interval_seconds=config.dead_letter_sweep_interval_s,
        on_copied=_report_swept,
    )
    tasks = [
        asyncio.ensure_future(heartbeat.run(stop)),
        asyncio.ensure_future(recorder.run(client, stop, config.metrics_flush_interval_s)),
        asyncio.ensure_future(sweeper.run(stop)),
    ]
    if schedules:
        interval = config.schedule_check_interval_s
        tasks.append(asyncio.ensure_future(keep_schedules(client, config.prefixes, schedules, stop, interval)))
    try:
        yield
    finally:
        stop.set()
        _, late = await asyncio.wait(tasks, timeout=5.0)
        for task in late:
            task.cancel()


async def _main(queue: QueueName) -> int:
    """Build the worker from the environment (entrypoints/bootstrap.py) and serve until a shutdown signal."""
    try:
        async with worker_components(queue) as parts:
            return await run_worker(
                parts.config, parts.handlers, recorder=parts.metrics, schedules=parts.schedules, client=parts.redis
            )
    except (ConfigurationError, SettingsError) as error:
        log.critical("worker_refused_to_start", queue=str(queue), error=str(error))
        return EXIT_CONFIGURATION
    except TransientError as error:
        log.critical("worker_dependency_unreachable", queue=str(queue), error=str(error))
        return EXIT_CRASHED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entrypoints.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--queue", required=True, choices=[str(queue) for queue in CONSUMED_QUEUES])
    args = parser.parse_args(argv)
    return uvloop.run(_main(QueueName(args.queue)))


if __name__ == "__main__":
    sys.exit(main())
