"""Operator commands: ``python -m entrypoints.cli <command>``.

migrate                      apply the database migrations (safe while workers run)
demo                         seed the demo org, trigger every kind of work, show what lands in the outbox
backfill ORG FIRST LAST      recompute an org's daily snapshots for FIRST..LAST (YYYY-MM-DD, inclusive)
run-now SCHEDULE             run a schedule now, through the same job path as its ticks
schedules                    each schedule's pattern, zone, next run, last run and outcome (JSON)
dead-letter list             the jobs that failed for good, newest first, each with whether its message is still
                             owed (no job data: it may hold PII)
dead-letter replay ID        put a dead-lettered job back on its source queue and remove the copy
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any

import uvloop
from bullmq import Queue

from adapters.bullmq.publisher import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, BullmqJobPublisher, add_job_once
from adapters.clock import SystemClock
from adapters.health.owed import is_owed
from adapters.postgres.migrator import migrate
from adapters.scheduling.schedules import find_schedule, run_now
from adapters.scheduling.status import schedule_status
from domain.errors import ClientFlowError
from domain.jobs import QueueName
from domain.values import OrgId
from entrypoints import demo
from entrypoints.bootstrap import RETENTION, System, observe, open_system, stop_observing
from entrypoints.settings import Settings, SettingsError


def _print(value: object) -> None:
    print(json.dumps(value, default=str, indent=2))


async def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    applied = await migrate(settings.database_url)
    _print({"applied": applied})
    return 0


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    clock = SystemClock()
    async with open_system(settings) as system:
        zone = await demo.seed(system.database, clock.now())
        print(f"seeded {demo.ORG} (zone {zone}: it is midday there, so every send window is open)")
        publisher = BullmqJobPublisher(system.redis, settings.bullmq_prefix, clock, RETENTION)
        await demo.trigger(system, publisher, clock, zone)
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


async def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        stored = await system.snapshots.backfill(OrgId(args.org), args.first, args.last)
    _print({"org": args.org, "first": args.first, "last": args.last, "snapshots_stored": stored})
    return 0


async def _run_now(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        schedule = find_schedule(system.schedules, args.schedule)
        job_id = await run_now(system.redis, settings.bullmq_prefix, schedule, SystemClock())
    _print({"schedule": args.schedule, "queued_job": job_id})
    return 0


async def _schedules(settings: Settings, _args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        _print(await schedule_status(system.redis, settings.bullmq_prefix, system.schedules))
    return 0


def _dead_letter_queue(system: System) -> Queue:
    return Queue(QueueName.DEAD_LETTER.value, {"prefix": system.settings.bullmq_prefix, "connection": system.redis})


async def _dead_letter_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        jobs = await _dead_letter_queue(system).getJobs(["waiting", "paused", "delayed"], 0, args.limit - 1)
        async with system.database.connection() as connection:
            owed = [await is_owed(connection, job.data) if isinstance(job.data, dict) else False for job in jobs]
        _print(
            [
                {
                    "id": job.id,
                    "sourceQueue": job.data.get("sourceQueue"),
                    "jobName": job.data.get("jobName"),
                    "jobId": job.data.get("jobId"),
                    "failedReason": job.data.get("failedReason"),
                    "attemptsMade": job.data.get("attemptsMade"),
                    "finishedOn": job.data.get("finishedOn"),
                    "owed": is_job_owed,  # its message is still owed (adapters/health/owed.py): replay it
                }
                for job, is_job_owed in zip(jobs, owed, strict=True)
            ]
        )
    return 0


async def _dead_letter_replay(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        dead_letter = _dead_letter_queue(system)
        copy = await dead_letter.getJob(args.id)
        if copy is None:
            print(f"no dead-lettered job {args.id}", file=sys.stderr)
            return 1
        source = QueueName(copy.data["sourceQueue"])
        replay_id = f"{copy.data['jobId']}-replay-{copy.data.get('finishedOn') or 0}"
        options: dict[str, Any] = {
            "jobId": replay_id,
            "attempts": DEFAULT_ATTEMPTS,
            "backoff": dict(DEFAULT_BACKOFF),
            **RETENTION.options(),
        }
        queue = Queue(source.value, {"prefix": settings.bullmq_prefix, "connection": system.redis})
        added = await add_job_once(queue, copy.data["jobName"], copy.data["data"], options)
        await dead_letter.remove(args.id)
    _print({"replayed": args.id, "queue": source.value, "job_id": replay_id, "added": added})
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
    backfill = commands.add_parser("backfill")
    backfill.add_argument("org")
    backfill.add_argument("first", type=date.fromisoformat)
    backfill.add_argument("last", type=date.fromisoformat)
    backfill.set_defaults(run=_backfill)
    run = commands.add_parser("run-now")
    run.add_argument("schedule", choices=["scan-appointments", "fan-out-snapshots"])
    run.set_defaults(run=_run_now)
    commands.add_parser("schedules").set_defaults(run=_schedules)
    dead = commands.add_parser("dead-letter").add_subparsers(dest="action", required=True)
    listing = dead.add_parser("list")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_dead_letter_list)
    replay = dead.add_parser("replay")
    replay.add_argument("id", help="the dead-letter job id, <source queue>.<job id>")
    replay.set_defaults(run=_dead_letter_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 78
    observe(settings, process="cli")
    try:
        result: int = uvloop.run(args.run(settings, args))
        return result
    except ClientFlowError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        stop_observing()


if __name__ == "__main__":
    sys.exit(main())
