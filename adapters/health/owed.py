"""Messages still owed that the queues' bookkeeping may have let go of, so they are seen rather than parked.

Two views, both read by the health server (``/health/queues``, ``/metrics``) and the CLI (``dead-letter list``):
- **dead-lettered and owed**: a copy in ``dead-letter`` of a reminder, nurture or dunning job that failed for good
  without its message being settled. A reminder is owed unless the send ledger holds a SENT or FAILED entry under
  its key (any channel); nurture and dunning jobs name no ledger key in their data (the key needs the enrollment or
  the dunning stage), so they count as owed unless they failed as a rejection or invalid data (an
  over-approximation: replaying one that was sent after all sends nothing, the ledger sees to that).
- **stuck in the ledger**: entries still CLAIMED or UNKNOWN ``owed_after`` since their last change (long past the
  settle period and a job's backoff): their job ended, or nothing resolves them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import attrs
import redis.asyncio as aioredis
from asyncpg.pool import PoolConnectionProxy

from adapters.bullmq.keys import job_key, queue_key
from domain.errors import InvalidJob
from domain.jobs import JobName, ReminderJob
from domain.reminder_scan import reminder_ledger_key
from domain.values import Channel

Connection = asyncpg.Connection | PoolConnectionProxy
MESSAGE_JOBS = frozenset({JobName.REMINDER.value, JobName.NURTURE.value, JobName.DUNNING.value})
# failedReason prefixes of failures that leave nothing owed (runtime.py: "<ErrorType>: ..." or InvalidJob's text).
_SETTLED_FAILURES = ("InvalidJob:", "DeliveryRejected:", "invalid job:")


@attrs.frozen
class OwedReport:
    dead_letter_owed: int
    stuck_ledger: Mapping[str, int]
    """CLAIMED / UNKNOWN entries unchanged for ``owed_after``, by state."""


def _reminder_key_prefix(job: ReminderJob) -> str:
    """The ledger key of the reminder without its channel: ``reminder:<appointment>:<kind>:<start>:``."""
    key = reminder_ledger_key(job.appointment_id, job.reminder_type, job.scheduled_for, Channel.SMS)
    return key[: -len(Channel.SMS.value)]


async def is_owed(connection: Connection, copy: Mapping[str, Any]) -> bool:
    """Whether a dead-letter copy's data (``jobName``, ``data``, ``failedReason``) stands for a message still owed."""
    if copy.get("jobName") not in MESSAGE_JOBS:
        return False
    reason = str(copy.get("failedReason") or "")
    if reason.startswith(_SETTLED_FAILURES):
        return False
    # Imported here: building the wire converter costs the health server ~0.3 s of start-up, and supervisord
    # judges a start by ``startsecs``.
    from adapters.bullmq.wire import decode_job

    try:
        job = decode_job(str(copy["jobName"]), copy.get("data")).job
    except InvalidJob:
        return False
    if not isinstance(job, ReminderJob):
        return True
    settled = await connection.fetchval(
        "select exists(select 1 from send_ledger where key like $1 || '%' and state in ('sent', 'failed'))",
        _reminder_key_prefix(job),
    )
    return not settled


async def dead_letter_copies(client: aioredis.Redis, prefix: str, queue: str, limit: int) -> list[Mapping[str, Any]]:
    """The data of up to ``limit`` copies held by the dead-letter queue (waiting, paused or delayed), read from the
    BullMQ job hashes directly (any client: bullmq's ``Queue`` needs one that decodes replies)."""
    delayed: list[bytes | str] = await client.zrange(queue_key(prefix, queue, "delayed"), 0, limit - 1)  # type: ignore[assignment]
    ids = [
        *await client.lrange(queue_key(prefix, queue, "wait"), 0, limit - 1),
        *await client.lrange(queue_key(prefix, queue, "paused"), 0, limit - 1),
        *delayed,
    ]
    copies: list[Mapping[str, Any]] = []
    for job_id in ids[:limit]:
        raw = await client.hget(job_key(prefix, queue, job_id), "data")
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        if isinstance(data, dict):
            copies.append(data)
    return copies


async def stuck_ledger_entries(connection: Connection, now: datetime, owed_after: timedelta) -> dict[str, int]:
    rows = await connection.fetch(
        "select state, count(*) as n from send_ledger where state in ('claimed', 'unknown') and updated_at < $1"
        " group by state",
        now - owed_after,
    )
    counts = {"claimed": 0, "unknown": 0}
    counts.update({row["state"]: row["n"] for row in rows})
    return counts


async def owed_report(
    connection: Connection, copies: Sequence[Mapping[str, Any]], now: datetime, owed_after: timedelta
) -> OwedReport:
    owed = [copy for copy in copies if await is_owed(connection, copy)]
    return OwedReport(len(owed), await stuck_ledger_entries(connection, now, owed_after))
