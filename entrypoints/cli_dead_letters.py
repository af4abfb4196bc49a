"""``python -m entrypoints.cli dead-letter list|show|replay|purge``: find why jobs failed, replay them safely.

Every command reads the ``dead-letter`` queue through adapters/bullmq/dead_letter_admin.py. Job data is shown
only by ``show --data``, redacted unless ``--unredacted``. ``replay --dry-run`` runs each job through the real
services with nothing sent, queued or committed (entrypoints/replay_check.py). Long runs show a progress bar on
standard error (rich); ``--json`` prints one JSON document on standard output for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from adapters.bullmq.dead_letter_admin import (
    REASON_KINDS,
    DeadLetterAdmin,
    DeadLetterEntry,
    DeadLetterFilter,
    counts_by_reason,
)
from adapters.health.owed import is_owed
from domain.jobs import CONSUMED_QUEUES as QUEUES
from domain.jobs import PUBLISHED_JOB_DEFAULTS
from entrypoints.bootstrap import open_system
from entrypoints.replay_check import replay_check
from entrypoints.settings import Settings

CONSUMED_QUEUES = frozenset(str(queue) for queue in QUEUES)
PROGRESS_FROM = 20
"""Runs over at least this many jobs show a progress bar."""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d`` -> seconds; argparse shows the ValueError's message."""
    found = _DURATION.match(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 12h or 7d")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def _operator() -> str:
    """Who runs the command: the OS account (not the environment, which anyone can set)."""
    return pwd.getpwuid(os.getuid()).pw_name


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _print_json(value: object) -> None:
    print(json.dumps(value, default=str, indent=2))


def _progress(total: int, what: str) -> Progress:
    """A progress bar on standard error, shown only for long runs on a terminal."""
    return Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=total < PROGRESS_FROM,
        transient=True,
    )


def _filter(args: argparse.Namespace, now_ms: int) -> DeadLetterFilter:
    return DeadLetterFilter(
        now_ms=now_ms,
        queue=args.queue,
        job_name=args.job_name,
        reason_kind=args.reason,
        org_id=args.org,
        older_than_s=args.older_than,
        newer_than_s=args.newer_than,
    )


def _has_filter(args: argparse.Namespace) -> bool:
    return any(
        getattr(args, name) is not None for name in ("queue", "job_name", "reason", "org", "older_than", "newer_than")
    )


def _list_table(
    entries: Sequence[DeadLetterEntry], owed: Sequence[bool], counts: dict[str, dict[str, int]], total: int
) -> None:
    console = Console()
    if not console.is_terminal:  # piped or redirected: full rows, not an 80-column squeeze
        console = Console(width=220)
    table = Table(title=f"dead letters: {total} matching, newest first")
    columns = ("id", "queue", "job name", "org", "reason kind", "reason", "failed at", "attempts", "owed", "marks")
    for column in columns:
        table.add_column(column, overflow="fold")
    for entry, is_owed_now in zip(entries, owed, strict=True):
        table.add_row(
            entry.id,
            entry.source_queue,
            entry.job_name,
            entry.org_id or "-",
            entry.reason_kind,
            entry.failed_reason[:80],
            _iso(entry.failed_at),
            f"{entry.attempts_made}/{entry.attempts_allowed}",
            "OWED" if is_owed_now else "",
            json.dumps(dict(entry.marks)) if entry.marks else "",
        )
    console.print(table)
    per_reason = ", ".join(f"{kind}: {n}" for kind, n in sorted(counts["all"].items())) or "none"
    console.print(f"by reason: {per_reason}")


async def dead_letter_list(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        admin = system.dead_letter_admin()
        matching = await admin.select(_filter(args, _now_ms()))
        shown = matching[: args.limit]
        async with system.database.connection() as connection:
            owed = [await is_owed(connection, _copy_of(entry)) for entry in shown]
    counts = counts_by_reason(matching)
    if args.json:
        jobs = [{**entry.summary(), "owed": is_owed_now} for entry, is_owed_now in zip(shown, owed, strict=True)]
        _print_json({"total": len(matching), "counts": counts, "jobs": jobs})
    else:
        _list_table(shown, owed, counts, len(matching))
    return 0


def _copy_of(entry: DeadLetterEntry) -> dict[str, object]:
    """The fields of a dead-letter copy that say whether its message is still owed (adapters/health/owed.py)."""
    return {"jobName": entry.job_name, "data": entry.data, "failedReason": entry.failed_reason}


async def dead_letter_show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        admin = system.dead_letter_admin()
        entry = await admin.get(args.id)
        replays = await admin.replays_of(args.id) if entry is None else []
    if entry is None:
        gone = f" (replayed by {replays[-1].by} at {_iso(replays[-1].at_ms)} as job {replays[-1].job_id})"
        print(f"no dead-lettered job {args.id}{gone if replays else ''}", file=sys.stderr)
        return 1
    shown: dict[str, Any] = entry.summary()
    if args.data:
        shown["data"] = entry.data if args.unredacted else entry.redacted_data()
        shown["dataRedacted"] = not args.unredacted
    if args.json:
        _print_json(shown)
        return 0
    for key, value in shown.items():
        text = _iso(value) if key in ("timestamp", "processedOn", "finishedOn", "deadLetteredAt") else value
        print(f"{key:>14}: {json.dumps(text, default=str) if isinstance(text, dict | list) else text}")
    return 0


async def _chosen(admin: DeadLetterAdmin, args: argparse.Namespace) -> list[DeadLetterEntry] | str:
    """The copies a replay applies to, or why the command refuses."""
    if args.id:
        if args.all or _has_filter(args):
            return "give one job id, or --all, or filters, not several"
        entry = await admin.get(args.id)
        return [entry] if entry is not None else f"no dead-lettered job {args.id}"
    if not (args.all or _has_filter(args)):
        return "give a job id, filters (--queue, --reason ...) or --all"
    return list(reversed(await admin.select(_filter(args, _now_ms()))))  # oldest failure first, as they came


def _tracked(entries: Sequence[DeadLetterEntry], what: str) -> Iterator[DeadLetterEntry]:
    """The entries, advancing a progress bar (on standard error, for long runs) as each is taken."""
    with _progress(len(entries), what) as progress:
        task = progress.add_task(what, total=len(entries))
        for entry in entries:
            yield entry
            progress.advance(task)


async def dead_letter_replay(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        admin = system.dead_letter_admin()
        chosen = await _chosen(admin, args)
        if isinstance(chosen, str):
            print(chosen, file=sys.stderr)
            return 2
        results: list[dict[str, Any]] = []
        if args.dry_run:
            async with replay_check(system) as check:
                for entry in _tracked(chosen, "dry run"):
                    results.append((await check.check(entry)).as_json())
        else:
            by = args.by or _operator()
            for entry in _tracked(chosen, "replay"):
                if entry.source_queue not in CONSUMED_QUEUES:
                    results.append({"id": entry.id, "refused": f"queue {entry.source_queue!r} is not one we consume"})
                    continue
                record = await admin.replay(entry, by, _now_ms(), PUBLISHED_JOB_DEFAULTS)
                results.append({"id": entry.id, "queue": record.queue, "jobId": record.job_id, "added": record.added})
    if args.json:
        _print_json({"dryRun": args.dry_run, "count": len(results), "jobs": results})
    elif args.dry_run:
        for result in results:
            print(f"{result['id']}: {result['verdict']}")
        print(f"dry run: nothing was sent, queued or changed ({len(results)} jobs)")
    else:
        for result in results:
            if "refused" in result:
                print(f"{result['id']}: not replayed: {result['refused']}")
                continue
            again = "" if result["added"] else " (was there already)"
            print(f"{result['id']}: replayed as {result['queue']}/{result['jobId']}{again}")
    return 0


async def dead_letter_purge(settings: Settings, args: argparse.Namespace) -> int:
    older_than = args.older_than if args.older_than is not None else settings.dead_letter_retention_days * 86400
    async with open_system(settings, run_migrations=False) as system:
        admin = system.dead_letter_admin()
        now_ms = _now_ms()
        doomed = await admin.select(DeadLetterFilter(now_ms=now_ms, older_than_s=older_than))
        removed = 0
        if not args.dry_run:
            for entry in _tracked(doomed, "purge"):
                removed += int(await admin.remove(entry.id))
    result = {"olderThanSeconds": older_than, "matching": len(doomed), "removed": removed, "dryRun": args.dry_run}
    if args.json:
        _print_json(result)
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {len(doomed) if args.dry_run else removed} dead letters older than {older_than:.0f} s")
    return 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", help=f"source queue ({', '.join(str(queue) for queue in QUEUES)})")
    parser.add_argument("--job-name", help="job name, e.g. process-dunning")
    parser.add_argument("--reason", choices=REASON_KINDS, help="reason kind")
    parser.add_argument("--org", help="org id")
    parser.add_argument("--older-than", type=duration_seconds, help="failed more than this long ago (30m, 12h, 7d)")
    parser.add_argument("--newer-than", type=duration_seconds, help="failed at most this long ago")


def add_dead_letter_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dead-letter list|show|replay|purge`` on the CLI's sub-commands."""
    dead = commands.add_parser("dead-letter", help="jobs that failed for good").add_subparsers(
        dest="action", required=True
    )
    listing = dead.add_parser("list", help="dead letters matching the filters, newest first, with counts per reason")
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="rows shown (counts cover every match)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=dead_letter_list)

    show = dead.add_parser("show", help="one dead letter: metadata, reason, attempts, timestamps")
    show.add_argument("id", help="the dead-letter id, <source queue>.<job id>")
    show.add_argument("--data", action="store_true", help="include the job data (redacted)")
    show.add_argument("--unredacted", action="store_true", help="with --data: the data in clear (holds PII)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=dead_letter_show)

    replay = dead.add_parser("replay", help="put dead letters back on their queue (try --dry-run first)")
    replay.add_argument("id", nargs="?", help="one dead-letter id")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    _add_filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="say what each job would do now; change nothing")
    replay.add_argument("--by", help="who replays (recorded; default: the OS account)")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(run=dead_letter_replay)

    purge = dead.add_parser("purge", help="remove dead letters older than the retention")
    purge.add_argument("--older-than", type=duration_seconds, help="default: DEAD_LETTER_RETENTION_DAYS")
    purge.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(run=dead_letter_purge)
