"""Operator commands: ``python -m entrypoints.cli <command>``.

migrate                      apply the database migrations (safe while workers run)
demo                         seed the demo org, trigger every kind of work, show what lands in the outbox
backfill ORG... FIRST LAST   recompute daily snapshots for FIRST..LAST (YYYY-MM-DD, inclusive; or --all-orgs);
                             an interrupted run resumes without recomputing finished days
run-now SCHEDULE             run a schedule now, through the same job path as its ticks
schedules                    each schedule's pattern, zone, next run, last run and outcome (JSON)
dead-letter list|show|replay|purge   find why jobs failed (and whether each message is still owed), replay them
                             (--dry-run first), purge old ones
queue counts|pause|resume|retry-failed   control a queue we consume
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import structlog
import uvloop

from adapters.observability.logging import configure_logging
from adapters.postgres.migrator import migrate
from adapters.scheduling.schedules import find_schedule, run_now
from adapters.scheduling.status import schedule_status
from domain.errors import ClientFlowError
from entrypoints import demo, preflight
from entrypoints.bootstrap import observe, open_system, stop_observing
from entrypoints.cli_backfill import add_backfill_command
from entrypoints.cli_dead_letters import add_dead_letter_commands
from entrypoints.cli_queues import add_queue_commands
from entrypoints.launch import log_tracebacks_as_lines
from entrypoints.settings import EXIT_CONFIGURATION, Settings, SettingsError, requested_production

log = structlog.get_logger("entrypoints.cli")


def _print(value: object) -> None:
    print(json.dumps(value, default=str, indent=2))


async def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    applied = await migrate(settings.database_url)
    _print({"applied": applied})
    return 0


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings) as system:
        zone = await demo.seed(system.database, system.clock.now())
        print(f"seeded {demo.ORG} (zone {zone}: it is midday there, so every send window is open)")
        await demo.trigger(system, zone)
        print(
            "queued: appointment scan, snapshot fan-out, a nurture step and a dunning notice; waiting for the workers"
        )

        async def report(found: demo.Landed) -> None:
            print(
                f"  outbox: {found.reminders} reminders, {found.nurture} nurture, {found.dunning} dunning;"
                f" snapshots: {found.snapshots}"
            )

        found = await demo.wait_until_landed(system.database, args.timeout, report)
        if found.complete:
            print("demo complete: see the messages with\n  psql \"$DATABASE_URL\" -c 'table outbox_messages'")
            return 0
        print("demo incomplete: are the workers running? (supervisorctl -c supervisord.conf status)")
        return 1


async def _run_now(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        schedule = find_schedule(system.schedules, args.schedule)
        job_id = await run_now(system.redis, settings.queue_prefixes, schedule, system.clock)
    _print({"schedule": args.schedule, "queued_job": job_id})
    return 0


async def _schedules(settings: Settings, _args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        _print(await schedule_status(system.redis, settings.queue_prefixes, system.schedules))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m entrypoints.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate").set_defaults(run=_migrate)
    demo_parser = commands.add_parser("demo")
    demo_parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the results")
    demo_parser.set_defaults(run=_demo)
    add_backfill_command(commands)
    run = commands.add_parser("run-now")
    run.add_argument("schedule", choices=["scan-appointments", "fan-out-snapshots", "maintain-queues"])
    run.set_defaults(run=_run_now)
    commands.add_parser("schedules").set_defaults(run=_schedules)
    add_dead_letter_commands(commands)
    add_queue_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging("info", requested_production())
    log_tracebacks_as_lines()
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        log.critical("command_refused", error=str(error))
        return EXIT_CONFIGURATION
    observe(settings, process="cli")
    try:
        uvloop.run(_dependencies(settings, needs_redis=args.run is not _migrate))
        result: int = uvloop.run(args.run(settings, args))
        return result
    except preflight.Refused as error:
        log.critical("command_refused", error=str(error))
        return EXIT_CONFIGURATION
    except preflight.Unreachable as error:
        log.critical("dependency_unreachable", error=str(error))
        return preflight.EXIT_UNAVAILABLE
    except ClientFlowError as error:
        log.error("command_failed", error_type=type(error).__name__, error=str(error))
        return 1
    except KeyboardInterrupt:
        return 130  # the command said what it left undone
    finally:
        stop_observing()


async def _dependencies(settings: Settings, needs_redis: bool) -> None:
    """PostgreSQL (and Redis, but for ``migrate``) answer, or one line naming the setting and the cause."""
    await preflight.check_postgres(settings.database_url)
    if needs_redis:
        await preflight.check_redis(settings)


if __name__ == "__main__":
    sys.exit(main())
