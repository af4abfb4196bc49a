"""Job name -> handler for one queue, with the wire decoding in front of it.

An unknown job name is an invalid job (failed at once, dead-lettered), never silently completed. The router
refuses to be built without a handler for every job of its queue, so a wiring gap stops start-up instead of
dead-lettering real jobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import attrs

from adapters.bullmq.wire import decode_job
from domain.errors import ConfigurationError, InvalidJob
from domain.jobs import JOB_TYPES, Job, JobName, QueueName
from domain.outcomes import Outcome

Handler = Callable[[Job], Awaitable[Outcome]]


@attrs.frozen
class RoutedJob:
    name: JobName
    payload: Job
    handler: Handler
    unknown_keys: tuple[str, ...]
    repaired_fields: tuple[str, ...] = ()


class JobRouter:
    def __init__(self, queue: QueueName, handlers: Mapping[JobName, Handler]) -> None:
        expected = {name for name, job_type in JOB_TYPES.items() if job_type.queue is queue}
        foreign = sorted(str(name) for name in set(handlers) - expected)
        missing = sorted(str(name) for name in expected - set(handlers))
        if foreign or missing:
            raise ConfigurationError(
                f"handlers for queue {queue} do not match its jobs: missing {missing or 'none'}, "
                f"not of this queue {foreign or 'none'}"
            )
        self.queue = queue
        self._handlers: dict[str, tuple[JobName, Handler]] = {str(n): (n, h) for n, h in handlers.items()}

    def route(self, name: str, data: object) -> RoutedJob:
        """Decode ``data`` for the job ``name``; raise InvalidJob for an unknown name or malformed data."""
        entry = self._handlers.get(name)
        if entry is None:
            raise InvalidJob("job name", f"is not a job of the {self.queue} queue")
        job_name, handler = entry
        decoded = decode_job(job_name, data)
        return RoutedJob(job_name, decoded.job, handler, decoded.unknown_keys, decoded.repaired_fields)
