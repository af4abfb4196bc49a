"""Jobs our own code enqueues (scan results, next nurture steps, snapshot fan-out), shaped as the Node producer's.

Defaults match the Node CRM's: 3 attempts with exponential backoff from 1 s. Ids are the caller's deterministic
ids, so publishing the same logical job twice adds it once. Retention limits keep finished jobs from growing
Redis without bound.

Each add is a PRODUCER span (``publish <queue>``) whose W3C context travels in the job option ``tm``, where npm
bullmq's telemetry puts it: the job's consumer span continues the trace of the job that published it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import redis.asyncio as redis_asyncio
from bullmq import Job as BullJob
from bullmq import Queue
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.bullmq.options import job_options
from adapters.bullmq.wire import encode_job
from adapters.observability.tracing import child_span
from adapters.redis_topology import QueuePrefixes, as_prefixes, transaction
from domain.errors import TransientError
from domain.jobs import CONSUMED_QUEUES, Job, JobDefaults, QueueName, job_type_of
from domain.ports import Clock


def default_job_options(defaults: JobDefaults) -> dict[str, Any]:
    """``defaults`` (domain/jobs.py) as bullmq job options: ``attempts``, ``backoff``, ``removeOnComplete`` and
    ``removeOnFail`` (bullmq's ``KeepJobs``: age in seconds, count)."""
    return {
        "attempts": defaults.attempts,
        "backoff": {"type": "exponential", "delay": defaults.backoff_delay_ms},
        "removeOnComplete": {"age": defaults.completed_age_s, "count": defaults.completed_count},
        "removeOnFail": {"age": defaults.failed_age_s, "count": defaults.failed_count},
    }


def check_custom_job_id(job_id: str) -> None:
    """npm bullmq refuses integer-looking custom ids and ``:`` (unless the id has exactly three parts)."""
    if not job_id or job_id.isdigit() or (":" in job_id and len(job_id.split(":")) != 3):
        raise ValueError("a custom job id must be non-empty, not an integer, and use ':' only as a-b-c triples")


async def add_job_once(queue: Queue, name: str, data: object, options: Mapping[str, Any]) -> bool:
    """Add a job under ``options['jobId']`` unless a job with that id exists; True when this call added it.

    The existence check and bullmq's add script run in one MULTI transaction, so two processes adding the same
    id at once get one True and one False (the add script itself ignores a duplicate id). On a Redis Cluster the
    transaction runs on the node of the queue's slot, which may lack the add scripts (a fresh node, or a replica
    promoted by a failover: scripts are not replicated); they are loaded and the transaction run again.
    """
    job = BullJob(queue, name, data, job_options(options))
    try:
        try:
            return await _add_unless_exists(queue, job)
        except NoScriptError:
            for script in _ADD_SCRIPTS:
                await queue.backend.conn.script_load(queue.backend.connection.commands[script].script)
            return await _add_unless_exists(queue, job)
    except (RedisConnectionError, RedisTimeoutError) as error:
        raise TransientError(f"job queue {queue.name} unreachable ({type(error).__name__})") from None


_ADD_SCRIPTS = ("addStandardJob", "addDelayedJob", "addPrioritizedJob")


async def _add_unless_exists(queue: Queue, job: BullJob) -> bool:
    async with transaction(queue.backend.conn) as pipe:
        pipe.exists(queue.toKey(job.id))
        await queue.backend.scripts.addJob(job, pipe)
        existed, _ = await pipe.execute()
    return not existed


class BullmqJobPublisher:
    """The JobPublisher port on BullMQ: one bullmq ``Queue`` per domain queue, all on the given client, each with
    its prefix (``prefixes``; a str: one for all)."""

    def __init__(
        self,
        client: redis_asyncio.Redis,
        prefixes: QueuePrefixes | str,
        clock: Clock,
        defaults: JobDefaults = JobDefaults(),  # noqa: B008  # frozen: one shared value is safe
    ) -> None:
        prefixes = as_prefixes(prefixes)
        self._clock = clock
        self._defaults = default_job_options(defaults)
        self._queues: dict[QueueName, Queue] = {
            name: Queue(name.value, {"prefix": prefixes.of(name.value), "connection": client})
            for name in CONSUMED_QUEUES
        }

    async def publish(self, job: Job, job_id: str, run_at: datetime | None = None) -> bool:
        check_custom_job_id(job_id)
        job_type = job_type_of(job)
        options = {**self._defaults, "jobId": job_id}
        if run_at is not None:
            delay_ms = int((run_at - self._clock.now()).total_seconds() * 1000)
            if delay_ms > 0:
                options["delay"] = delay_ms
        queue = job_type.queue.value
        attributes = {
            "messaging.system": "bullmq",
            "messaging.destination.name": queue,
            "messaging.operation.type": "send",
            "messaging.operation.name": "add",
            "bullmq.job.name": job_type.name.value,
        }
        with child_span(f"publish {queue}", SpanKind.PRODUCER, attributes):
            carrier: dict[str, str] = {}
            inject(carrier)
            if carrier:
                options["tm"] = json.dumps(carrier, separators=(",", ":"))
            return await add_job_once(self._queues[job_type.queue], job_type.name.value, encode_job(job), options)
