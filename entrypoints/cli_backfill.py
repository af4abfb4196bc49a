"""``python -m entrypoints.cli backfill ORG... FIRST LAST`` (or ``--all-orgs``): recompute daily snapshots.

Shows a progress bar over every (org, day) on standard error. Each finished day is checkpointed
(adapters/backfill_checkpoint.py): interrupted (Ctrl-C, a lost connection), the same command resumes where it
stopped, without recomputing the days already done; ``--restart`` recomputes everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from adapters.backfill_checkpoint import backfill_id
from domain.errors import InvalidValue
from domain.jobs import SnapshotJob
from domain.outcomes import SnapshotStored
from domain.snapshots import SnapshotService
from domain.values import OrgId
from entrypoints.bootstrap import open_system
from entrypoints.settings import Settings


async def _org_ids(snapshots: SnapshotService, args: argparse.Namespace) -> list[OrgId]:
    if args.all_orgs == bool(args.org):
        raise InvalidValue("orgs", "must be given as ids or as --all-orgs, not both or neither")
    return [org.id for org in await snapshots.organizations.active()] if args.all_orgs else [OrgId(o) for o in args.org]


async def _plan(snapshots: SnapshotService, org_ids: list[OrgId], first: date, last: date) -> list[tuple[OrgId, date]]:
    """Every (org, day) to compute; each org's range is checked before anything is computed."""
    return [(org_id, day) for org_id in org_ids for day in await snapshots.backfill_days(org_id, first, last)]


def _progress() -> Progress:
    return Progress(
        TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip


async def backfill(settings: Settings, args: argparse.Namespace) -> int:
    async with open_system(settings, run_migrations=False) as system:
        org_ids = await _org_ids(system.snapshots, args)
        plan = await _plan(system.snapshots, org_ids, args.first, args.last)
        checkpoint = system.backfill_checkpoint(backfill_id(org_ids, args.first, args.last))
        if args.restart:
            await checkpoint.forget()
        done = await checkpoint.done()
        todo = [pair for pair in plan if pair not in done]
        stored = 0
        try:
            with _progress() as progress:
                task = progress.add_task("backfill", total=len(plan), completed=len(plan) - len(todo))
                for org_id, day in todo:
                    if isinstance(await system.snapshots.compute(SnapshotJob(org_id, day)), SnapshotStored):
                        stored += 1
                    await checkpoint.mark(org_id, day)
                    progress.advance(task)
        except BaseException:  # Ctrl-C arrives as a cancellation; a lost connection as an error: both resume
            print(f"backfill interrupted after {stored} new days: run the same command to resume", file=sys.stderr)
            raise
        await checkpoint.forget()
    summary: dict[str, object] = {
        "orgs": len(org_ids),
        "first": args.first,
        "last": args.last,
        "days": len(plan),
        "resumed_days": len(plan) - len(todo),
        "snapshots_stored": stored,
    }
    if len(org_ids) == 1:
        summary["org"] = org_ids[0]
    print(json.dumps(summary, default=str, indent=2))
    return 0


def add_backfill_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("backfill", help="recompute daily snapshots of orgs for FIRST..LAST (inclusive)")
    parser.add_argument("org", nargs="*", help="org ids (or --all-orgs)")
    parser.add_argument("first", type=date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("last", type=date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--all-orgs", action="store_true", help="every active org")
    parser.add_argument("--restart", action="store_true", help="forget an interrupted run's progress")
    parser.set_defaults(run=backfill)
