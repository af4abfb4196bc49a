"""Process main of the health and metrics server: ``python -m entrypoints.health``.

Serves ``/health/live``, ``/health/ready``, ``/health/queues``, ``/health/scheduler``, ``/metrics`` and
``/metrics.json`` on loopback by default. Configuration comes from the environment (entrypoints/settings.py: the
same variables as the workers, so no password appears on a command line); arguments override it for tests.
SIGTERM/SIGINT stop it with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

import attrs
import structlog

from adapters.bullmq.connection import RedisSettings, close_redis
from adapters.bullmq.keys import DEAD_LETTER_QUEUE
from adapters.health.probe import HealthProbe
from adapters.health.server import build_health_app, running_health_server
from adapters.observability.logging import configure_logging
from adapters.redis_topology import QueuePrefixes
from domain.jobs import CONSUMED_QUEUES
from entrypoints.bootstrap import open_probe_redis, redis_settings
from entrypoints.settings import Settings, SettingsError

QUEUES = tuple(str(queue) for queue in CONSUMED_QUEUES)
log = structlog.get_logger("entrypoints.health")


@attrs.frozen
class HealthServerOptions:
    redis: RedisSettings
    database_url: str = attrs.field(repr=False)
    prefixes: QueuePrefixes = attrs.field(factory=lambda: QueuePrefixes("bull"))
    queues: Sequence[str] = QUEUES
    required_queues: Sequence[str] = QUEUES
    dead_letter_queue: str = DEAD_LETTER_QUEUE
    host: str = "127.0.0.1"
    port: int = 9464
    check_timeout_seconds: float = 2.0
    owed_after_seconds: float = 900.0


async def serve(options: HealthServerOptions, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    client = open_probe_redis(options.redis, options.check_timeout_seconds)
    probe = HealthProbe(
        redis=client,
        database_dsn=options.database_url,
        prefixes=options.prefixes,
        queues=options.queues,
        required_queues=options.required_queues,
        dead_letter_queue=options.dead_letter_queue,
        timeout_seconds=options.check_timeout_seconds,
        owed_after=timedelta(seconds=options.owed_after_seconds),
    )
    try:
        async with running_health_server(build_health_app(probe), options.host, options.port) as port:
            log.info("health server listening", host=options.host, port=port)
            await stop.wait()
    finally:
        await close_redis(client)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_arguments(argv: Sequence[str]) -> tuple[HealthServerOptions, str, bool]:
    parser = argparse.ArgumentParser(prog="python -m entrypoints.health", description=__doc__)
    settings = Settings.from_env()
    parser.add_argument("--database-url", default=settings.database_url, help="default: DATABASE_URL")
    parser.add_argument("--prefix", default=settings.bullmq_prefix, help="default: BULLMQ_PREFIX")
    parser.add_argument("--queues", type=_csv, default=QUEUES, help="queues to report, comma-separated")
    parser.add_argument("--required-queues", type=_csv, default=None, help="queues that need a live worker")
    parser.add_argument("--dead-letter-queue", default=DEAD_LETTER_QUEUE)
    parser.add_argument("--host", default=settings.health_host)
    parser.add_argument("--port", type=int, default=settings.health_port)
    parser.add_argument("--log-level", default=settings.log_level, help="pino level: trace debug info warn error fatal")
    parser.add_argument("--production", action="store_true", default=settings.production, help="JSON log lines")
    args = parser.parse_args(argv)
    options = HealthServerOptions(
        redis=redis_settings(settings),
        database_url=args.database_url,
        prefixes=QueuePrefixes(args.prefix, settings.queue_prefixes.own),
        queues=args.queues,
        required_queues=args.queues if args.required_queues is None else args.required_queues,
        dead_letter_queue=args.dead_letter_queue,
        host=args.host,
        port=args.port,
        owed_after_seconds=settings.owed_after_seconds,
    )
    return options, args.log_level, args.production


async def _main(options: HealthServerOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options, log_level, production = parse_arguments(sys.argv[1:] if argv is None else argv)
    except SettingsError as error:
        print(f"health server refused to start: {error}", file=sys.stderr)  # noqa: T201  # before logging exists
        return 78
    configure_logging(log_level, production)
    asyncio.run(_main(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
