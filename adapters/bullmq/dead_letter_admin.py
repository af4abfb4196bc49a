"""What an operator does with the ``dead-letter`` queue: read it with filters, count it by reason, purge it by age,
and put copies back on their source queue (recording who replayed what, and when).

The copies are written by adapters/bullmq/dead_letter.py (``FailedJob.as_data``). Fields of a copy this module does
not know (a marker another part adds, e.g. that a message is still owed) are kept as ``marks`` and shown as they
are, so a listing never hides them. Job data is never returned unless asked for; ``redacted_data`` masks it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import redis.asyncio as redis_asyncio
import structlog
from bullmq import Queue

from adapters.bullmq.keys import DEAD_LETTER_QUEUE, queue_key
from adapters.bullmq.publisher import add_job_once, default_job_options
from adapters.observability.redaction import redact
from adapters.redis_keys import replay_log_key
from adapters.redis_topology import QueuePrefixes, as_prefixes
from domain.jobs import JobDefaults, QueueName

log = structlog.get_logger()

_KNOWN_FIELDS = frozenset(
    {
        "sourceQueue",
        "jobName",
        "jobId",
        "data",
        "failedReason",
        "attemptsMade",
        "attempts",
        "timestamp",
        "processedOn",
        "finishedOn",
        "stalledCounter",
    }
)
_READ_BATCH = 500
REPLAY_LOG_LENGTH = 10_000
"""How many replay records ``<prefix>:cf:dead-letter:replays`` keeps (a capped Redis stream)."""

# failedReason -> reason kind. The texts are the runtime's (adapters/bullmq/runtime.py) and bullmq's own
# ("job stalled more than allowable limit", moveStalledJobsToWait.lua); first match wins.
_REASON_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("invalid_job", re.compile(r"^(InvalidJob: )?invalid job\b")),
    ("delivery_rejected", re.compile(r"^DeliveryRejected\b")),
    ("outcome_unknown", re.compile(r"^DeliveryOutcomeUnknown\b")),
    ("transient", re.compile(r"^TransientError\b")),
    ("handler_bug", re.compile(r"^unexpected \w+ in the handler")),
    ("stalled", re.compile(r"stalled more than allowable limit")),
)
REASON_KINDS = (*(kind for kind, _ in _REASON_KINDS), "other")


def reason_kind(failed_reason: str) -> str:
    """The kind of a ``failedReason``: one of ``REASON_KINDS``."""
    for kind, pattern in _REASON_KINDS:
        if pattern.search(failed_reason):
            return kind
    return "other"


@attrs.frozen
class DeadLetterEntry:
    """One dead-letter copy. Times are epoch milliseconds; ``dead_lettered_at`` is when the copy was made."""

    id: str
    source_queue: str
    job_name: str
    job_id: str
    failed_reason: str
    attempts_made: int
    attempts_allowed: int
    created_at: int | None
    processed_on: int | None
    finished_on: int | None
    dead_lettered_at: int
    org_id: str | None
    marks: Mapping[str, Any]
    data: Any = attrs.field(repr=False)

    @property
    def reason_kind(self) -> str:
        return reason_kind(self.failed_reason)

    @property
    def failed_at(self) -> int:
        """When the job failed for good (the copy's own time when the source did not say)."""
        return self.finished_on or self.dead_lettered_at

    def summary(self) -> dict[str, Any]:
        """Everything but the job data (which may hold PII)."""
        return {
            "id": self.id,
            "sourceQueue": self.source_queue,
            "jobName": self.job_name,
            "jobId": self.job_id,
            "orgId": self.org_id,
            "reasonKind": self.reason_kind,
            "failedReason": self.failed_reason,
            "attemptsMade": self.attempts_made,
            "attempts": self.attempts_allowed,
            "timestamp": self.created_at,
            "processedOn": self.processed_on,
            "finishedOn": self.finished_on,
            "deadLetteredAt": self.dead_lettered_at,
            "marks": dict(self.marks),
        }

    def redacted_data(self) -> Any:
        """The job data with PII and secrets masked (adapters/observability/redaction.py)."""
        return redact(self.data)


@attrs.frozen
class DeadLetterFilter:
    """Which copies a command applies to; every criterion given must match. Ages in seconds, ``now_ms`` epoch ms."""

    now_ms: int
    queue: str | None = None
    job_name: str | None = None
    reason_kind: str | None = None
    org_id: str | None = None
    older_than_s: float | None = None
    newer_than_s: float | None = None

    def matches(self, entry: DeadLetterEntry) -> bool:
        age_s = (self.now_ms - entry.failed_at) / 1000
        return (
            (self.queue is None or entry.source_queue == self.queue)
            and (self.job_name is None or entry.job_name == self.job_name)
            and (self.reason_kind is None or entry.reason_kind == self.reason_kind)
            and (self.org_id is None or entry.org_id == self.org_id)
            and (self.older_than_s is None or age_s > self.older_than_s)
            and (self.newer_than_s is None or age_s <= self.newer_than_s)
        )


def counts_by_reason(entries: Iterable[DeadLetterEntry]) -> dict[str, dict[str, int]]:
    """``{source queue: {reason kind: count}}``, plus ``"all"`` over every queue."""
    per_queue: dict[str, Counter[str]] = {}
    total: Counter[str] = Counter()
    for entry in entries:
        per_queue.setdefault(entry.source_queue, Counter())[entry.reason_kind] += 1
        total[entry.reason_kind] += 1
    return {"all": dict(total), **{queue: dict(counts) for queue, counts in sorted(per_queue.items())}}


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def _int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None  # type: ignore[call-overload]  # checked by except
    except (TypeError, ValueError):
        return None


def entry_from_copy(copy_id: str, raw_data: str, raw_timestamp: str | None) -> DeadLetterEntry:
    """A copy's job hash fields (``data`` JSON, ``timestamp`` epoch ms) as an entry; unreadable data reads as empty."""
    try:
        fields = json.loads(raw_data)
    except ValueError:
        fields = {}
    if not isinstance(fields, dict):
        fields = {}
    data = fields.get("data")
    org_id = data.get("orgId") if isinstance(data, dict) else None
    return DeadLetterEntry(
        id=copy_id,
        source_queue=str(fields.get("sourceQueue") or copy_id.partition(".")[0]),
        job_name=str(fields.get("jobName") or ""),
        job_id=str(fields.get("jobId") or copy_id.partition(".")[2]),
        failed_reason=str(fields.get("failedReason") or ""),
        attempts_made=_int(fields.get("attemptsMade")) or 0,
        attempts_allowed=_int(fields.get("attempts")) or 1,
        created_at=_int(fields.get("timestamp")),
        processed_on=_int(fields.get("processedOn")),
        finished_on=_int(fields.get("finishedOn")),
        dead_lettered_at=_int(raw_timestamp) or 0,
        org_id=str(org_id) if isinstance(org_id, str | int) else None,
        marks={key: value for key, value in fields.items() if key not in _KNOWN_FIELDS},
        data=data,
    )


@attrs.frozen
class ReplayRecord:
    """What a real replay did: the copy, the new job on the source queue, who asked and when (epoch ms)."""

    copy_id: str
    queue: str
    job_id: str
    added: bool
    by: str
    at_ms: int


class DeadLetterAdmin:
    """Reads and changes the ``dead-letter`` queue of one deployment (``prefixes``: each queue's and ours; a str:
    one for all)."""

    def __init__(self, client: redis_asyncio.Redis, prefixes: QueuePrefixes | str) -> None:
        self._client = client
        self._prefixes = as_prefixes(prefixes)
        self._queue = Queue(DEAD_LETTER_QUEUE, {"prefix": self._prefixes.of(DEAD_LETTER_QUEUE), "connection": client})

    def _key(self, suffix: str) -> str:
        return queue_key(self._prefixes.of(DEAD_LETTER_QUEUE), DEAD_LETTER_QUEUE, suffix)

    async def copy_ids(self) -> list[str]:
        """Every copy id, oldest first (nothing consumes the queue: copies wait, or sit paused or delayed)."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.lrange(self._key("wait"), 0, -1)
            pipe.lrange(self._key("paused"), 0, -1)
            pipe.zrange(self._key("delayed"), 0, -1)
            pipe.zrange(self._key("prioritized"), 0, -1)
            waiting, paused, delayed, prioritized = await pipe.execute()
        ids = [_text(i) or "" for i in (*reversed(waiting), *reversed(paused), *delayed, *prioritized)]
        return list(dict.fromkeys(ids))

    async def entries(self, ids: Sequence[str] | None = None) -> AsyncIterator[DeadLetterEntry]:
        """The copies (all, or those of ``ids`` that exist), read in pipelined batches."""
        wanted = await self.copy_ids() if ids is None else list(ids)
        for start in range(0, len(wanted), _READ_BATCH):
            batch = wanted[start : start + _READ_BATCH]
            async with self._client.pipeline(transaction=False) as pipe:
                for copy_id in batch:
                    pipe.hmget(self._key(copy_id), ["data", "timestamp"])
                replies = await pipe.execute()
            for copy_id, (raw_data, raw_timestamp) in zip(batch, replies, strict=True):
                if raw_data is not None:
                    yield entry_from_copy(copy_id, _text(raw_data) or "", _text(raw_timestamp))

    async def select(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        """The copies matching ``where``, newest failure first."""
        found = [entry async for entry in self.entries() if where.matches(entry)]
        return sorted(found, key=lambda e: e.failed_at, reverse=True)

    async def get(self, copy_id: str) -> DeadLetterEntry | None:
        async for entry in self.entries([copy_id]):
            return entry
        return None

    async def remove(self, copy_id: str) -> bool:
        """Remove one copy (bullmq's own remove: its keys, its place in the queue). False when it was gone."""
        removed = await self._queue.remove(copy_id)
        return bool(removed)

    async def replay(
        self,
        entry: DeadLetterEntry,
        by: str,
        now_ms: int,
        defaults: JobDefaults = JobDefaults(),  # noqa: B008  # frozen
    ) -> ReplayRecord:
        """Put ``entry`` back on its source queue as a new job, record who/when, then remove the copy.

        The new job id is ``<job id>-replay-<finished on>``: replaying the same copy twice adds one job. The job
        runs through the normal path, so the send ledger keeps any message it already holds from going out again.
        Raises ValueError for a source queue we do not consume.
        """
        source = QueueName(entry.source_queue)  # ValueError for the dead-letter queue itself, or one we do not consume
        job_id = f"{entry.job_id}-replay-{entry.finished_on or entry.dead_lettered_at}"
        options: dict[str, Any] = {**default_job_options(defaults), "jobId": job_id}
        queue = Queue(source.value, {"prefix": self._prefixes.of(source.value), "connection": self._client})
        added = await add_job_once(queue, entry.job_name, entry.data, options)
        record = ReplayRecord(entry.id, source.value, job_id, added, by, now_ms)
        await self._client.xadd(
            replay_log_key(self._prefixes.home),
            {k: str(v) for k, v in attrs.asdict(record).items()},
            maxlen=REPLAY_LOG_LENGTH,
            approximate=True,
        )
        await self.remove(entry.id)
        log.info("dead_letter_replayed", copy_id=entry.id, queue=source.value, job_id=job_id, added=added, by=by)
        return record

    async def replays_of(self, copy_id: str, limit: int = 1000) -> list[ReplayRecord]:
        """The recorded replays of one copy id, oldest first (from the last ``limit`` records)."""
        raw = await self._client.xrevrange(replay_log_key(self._prefixes.home), count=limit) or []
        records = []
        for _stream_id, fields in reversed(raw):
            values = {(_text(k) or ""): (_text(v) or "") for k, v in (fields or {}).items()}
            if values.get("copy_id") == copy_id:
                records.append(
                    ReplayRecord(
                        copy_id=copy_id,
                        queue=values.get("queue", ""),
                        job_id=values.get("job_id", ""),
                        added=values.get("added") == "True",
                        by=values.get("by", ""),
                        at_ms=_int(values.get("at_ms")) or 0,
                    )
                )
        return records

    async def purge(
        self, older_than_s: float, now_ms: int, on_removed: Callable[[DeadLetterEntry], None] | None = None
    ) -> int:
        """Remove every copy that failed more than ``older_than_s`` seconds ago; returns how many were removed."""
        removed = 0
        for entry in await self.select(DeadLetterFilter(now_ms=now_ms, older_than_s=older_than_s)):
            if await self.remove(entry.id):
                removed += 1
            if on_removed is not None:
                on_removed(entry)
        if removed:
            log.info("dead_letters_purged", count=removed, older_than_s=older_than_s)
        return removed
