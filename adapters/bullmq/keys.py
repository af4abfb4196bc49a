"""BullMQ's Redis key names that our adapters read directly, in one module to grep.

Prefer what the ``bullmq`` library exposes (``Queue.getJobCounts``, ``getJobScheduler``...); these are the reads it
offers no call for (a range of failed jobs by score, raw job hashes in a pipeline, the queue's version marker).
The layout is npm bullmq's: ``<prefix>:<queue>:<suffix>``, a job's hash at ``<prefix>:<queue>:<job id>``.
"""

from __future__ import annotations

DEAD_LETTER_QUEUE = "dead-letter"
"""The queue of final-failure copies (adapters/bullmq/dead_letter.py), beside the consumed queues under the same
prefix; the Node worker's name. Nothing consumes it: it is the BullMQ adapter's, not a queue of the domain."""


def queue_key(prefix: str, queue: str, suffix: str) -> str:
    """One of a queue's keys: a state (``wait``, ``paused``, ``delayed``, ``failed``...), ``meta``, ``repeat``,
    ``metrics:completed``..."""
    return f"{prefix}:{queue}:{suffix}"


def job_key(prefix: str, queue: str, job_id: bytes | str) -> str:
    """A job's hash (``data``, ``timestamp``, ``delay``, ``failedReason``...)."""
    return f"{prefix}:{queue}:{job_id.decode() if isinstance(job_id, bytes) else job_id}"
