"""``python -m entrypoints.cli queue counts|pause|resume|retry-failed``: control a queue we consume.

A queue we do not consume (the dead-letter queue, a typo, another application's) is refused by name.
"""

from __future__ import annotations

import argparse
import json

from adapters.bullmq.queue_control import QueueControl
from adapters.scheduling.schedules import OWNED_QUEUES
from entrypoints.bootstrap import open_system
from entrypoints.settings import Settings

QUEUES = tuple(str(queue) for queue in OWNED_QUEUES)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


async def queue_counts(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        found = {}
        for name in [args.queue] if args.queue else QUEUES:
            control = QueueControl(system.redis, settings.queue_prefixes, name)
            found[name] = {"paused": await control.is_paused(), "counts": await control.counts()}
    _print_json(found)
    return 0


async def queue_pause(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        control = QueueControl(system.redis, settings.queue_prefixes, args.queue)
        await (control.pause() if args.command_name == "pause" else control.resume())
        paused = await control.is_paused()
    _print_json({"queue": args.queue, "paused": paused})
    return 0


async def queue_retry_failed(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        control = QueueControl(system.redis, settings.queue_prefixes, args.queue)
        if args.dry_run:
            _print_json({"queue": args.queue, "dryRun": True, "wouldRetry": await control.failed_ids(args.limit)})
            return 0
        retried = await control.retry_failed(args.limit)
    _print_json({"queue": args.queue, "retried": list(retried.moved), "skipped": list(retried.skipped)})
    return 0


def add_queue_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``queue counts|pause|resume|retry-failed`` on the CLI's sub-commands."""
    queue = commands.add_parser("queue", help="control a queue we consume").add_subparsers(
        dest="command_name", required=True
    )
    counts = queue.add_parser("counts", help="jobs per state, and whether the queue is paused (JSON)")
    counts.add_argument("queue", nargs="?", choices=QUEUES)
    counts.set_defaults(run=queue_counts)
    for name, text in (("pause", "workers take no new job (running ones finish)"), ("resume", "undo pause")):
        parser = queue.add_parser(name, help=text)
        parser.add_argument("queue", choices=QUEUES)
        parser.set_defaults(run=queue_pause)
    retry = queue.add_parser("retry-failed", help="move the oldest failed jobs back to waiting (attempts reset)")
    retry.add_argument("queue", choices=QUEUES)
    retry.add_argument("--limit", type=int, default=100, help="at most this many jobs (default 100)")
    retry.add_argument("--dry-run", action="store_true", help="list the ids it would move")
    retry.set_defaults(run=queue_retry_failed)
