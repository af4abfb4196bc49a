"""How supervisord starts a program: ``python -m entrypoints.launch worker --queue reminders``, ``... health`` or
``... webhooks``.

In the first moments of the process, before the heavy imports of the worker or health server:

1. under supervisord, leave with it (parent-death signal) and refuse to join while an earlier set of this checkout
   is still alive (entrypoints/lifecycle.py);
2. read and check every setting (exit 78 with one line naming the variable and the rule);
3. the health and webhooks servers: check their port can be bound (taken: exit 78); a worker and the webhooks server:
   check PostgreSQL and Redis (permanent cause: exit 78; nothing answering: wait with backoff, one line per attempt,
   not ready meanwhile);
4. hand over to ``entrypoints.worker`` / ``entrypoints.health`` / ``entrypoints.webhooks``.

Each refusal is one log line; with NODE_ENV=production every line, uncaught tracebacks included, is JSON. Exiting
within supervisord's ``startsecs`` makes repeated refusals end in FATAL, which the fatal-alert listener reports.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from domain.jobs import CONSUMED_QUEUES
from entrypoints.lifecycle import EarlierSetRunning, claim_place, leave_with_parent, seconds_since_spawn, supervised
from entrypoints.settings import EXIT_CONFIGURATION, Settings, SettingsError, requested_production

QUEUES = tuple(str(queue) for queue in CONSUMED_QUEUES)


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    import structlog  # configured by then

    structlog.get_logger("entrypoints.launch").critical("uncaught_exception", exc_info=(kind, error, trace))


def log_tracebacks_as_lines() -> None:
    """Uncaught exceptions (main thread and others) and warnings go through the logging pipeline: JSON in
    production."""
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda hook: _log_uncaught(hook.exc_type, hook.exc_value or Exception(), hook.exc_traceback)


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m entrypoints.launch", description=__doc__.splitlines()[0])
    programs = parser.add_subparsers(dest="program", required=True)
    programs.add_parser("worker").add_argument("--queue", required=True, choices=QUEUES)
    programs.add_parser("health")
    programs.add_parser("webhooks")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    name = f"worker-{args.queue}" if args.program == "worker" else args.program
    refusal = None
    if supervised():  # first, before any heavy import: a draining earlier set must be seen while it drains
        leave_with_parent()
        try:
            claim_place(name)
        except EarlierSetRunning as error:
            refusal = str(error)
    from adapters.observability.logging import configure_logging

    configure_logging("info", requested_production())
    log_tracebacks_as_lines()
    import structlog

    log = structlog.get_logger("entrypoints.launch").bind(program=name)
    try:
        if refusal is not None:
            raise EarlierSetRunning(refusal)
        settings = Settings.from_env()
    except (EarlierSetRunning, SettingsError) as error:
        log.critical("start_refused", error=str(error))
        return EXIT_CONFIGURATION
    configure_logging(settings.log_level, settings.production)
    if args.program == "health":
        return _health(settings, log)
    if args.program == "webhooks":
        return _webhooks(settings, log)
    return _worker(settings, args.queue, log)


def _health(settings: Settings, log: Any) -> int:
    from entrypoints import health, preflight

    try:
        preflight.check_port_free(settings.health_host, settings.health_port)
    except preflight.Refused as error:
        log.critical("start_refused", error=str(error))
        return EXIT_CONFIGURATION
    log.info("start_checks_passed", seconds_since_spawn=seconds_since_spawn())
    return health.main([])


def _webhooks(settings: Settings, log: Any) -> int:
    import uvloop

    from entrypoints import preflight

    try:
        preflight.check_port_free(settings.webhooks_host, settings.webhooks_port, "WEBHOOKS")
        uvloop.run(preflight.wait_for_dependencies(settings))  # it settles the send ledger: PostgreSQL is needed
    except preflight.Refused as error:
        log.critical("start_refused", error=str(error))
        return EXIT_CONFIGURATION
    log.info("start_checks_passed", seconds_since_spawn=seconds_since_spawn())
    from entrypoints import webhooks

    return webhooks.main()


def _worker(settings: Settings, queue: str, log: Any) -> int:
    import uvloop

    from entrypoints import preflight

    try:
        uvloop.run(preflight.wait_for_dependencies(settings))
    except preflight.Refused as error:
        log.critical("start_refused", error=str(error))
        return EXIT_CONFIGURATION
    log.info("start_checks_passed", seconds_since_spawn=seconds_since_spawn())
    from entrypoints import worker  # the heavy part: bullmq, providers, domain

    return worker.main(["--queue", queue])


if __name__ == "__main__":
    sys.exit(main())
