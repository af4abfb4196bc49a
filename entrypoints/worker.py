"""Process main for one queue's worker: ``python -m entrypoints.worker --queue reminders``.

Exit codes: 0 after a clean or forced shutdown (SIGTERM/SIGINT), 78 on a configuration problem (start-up checks,
a handler's ConfigurationError), 70 when the runtime itself crashed. The supervisor restarts on non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import structlog
import uvloop

from adapters.bullmq.connection import close_redis, open_redis
from adapters.bullmq.router import Handler, JobRouter
from adapters.bullmq.runtime import EXIT_CONFIGURATION, EXIT_CRASHED, QueueWorker, WorkerConfig
from adapters.bullmq.startup_checks import run_startup_checks
from domain.errors import ConfigurationError
from domain.jobs import JobName, QueueName

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
    config: WorkerConfig, handlers: Mapping[JobName, Handler], signals: ShutdownSignals | None = None
) -> int:
    """Consume ``config.queue`` with ``handlers`` until a shutdown signal; return the process exit code.

    With ``signals`` None, SIGTERM/SIGINT handlers are installed on the running loop.
    """
    own_signals = signals is None
    signals = signals or ShutdownSignals()
    client = open_redis(config.redis, config.concurrency)
    try:
        router = JobRouter(config.queue, handlers)
        await run_startup_checks(client, config.prefix, str(config.queue))
        if own_signals:
            signals.install()
        try:
            return await QueueWorker(config, router, client).serve(signals.stop, signals.force)
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
        await close_redis(client)


class WorkerComponents(Protocol):
    """What entrypoints/bootstrap.py provides: ``worker_components(queue)`` opening the adapters and services for
    one queue's worker and yielding its config and handlers (closing them on exit)."""

    def __call__(
        self, queue: QueueName
    ) -> AbstractAsyncContextManager[tuple[WorkerConfig, Mapping[JobName, Handler]]]: ...


async def _main(queue: QueueName) -> int:
    bootstrap = importlib.import_module("entrypoints.bootstrap")  # the composition root, owned by the lead
    components: WorkerComponents = bootstrap.worker_components
    async with components(queue) as (config, handlers):
        return await run_worker(config, handlers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entrypoints.worker", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queue", required=True, choices=[q.value for q in QueueName if q is not QueueName.DEAD_LETTER]
    )
    args = parser.parse_args(argv)
    return uvloop.run(_main(QueueName(args.queue)))


if __name__ == "__main__":
    sys.exit(main())
