"""The job router: every job of the queue needs a handler; unknown names and bad data are invalid jobs."""

from __future__ import annotations

import pytest

from adapters.bullmq.router import Handler, JobRouter
from domain.errors import ConfigurationError, InvalidJob
from domain.jobs import Job, JobName, QueueName, SnapshotJob
from domain.outcomes import Outcome, Published


async def _noop(_job: Job) -> Outcome:
    return Published(0)


SNAPSHOT_HANDLERS: dict[JobName, Handler] = {
    JobName.SNAPSHOT: _noop,
    JobName.FAN_OUT_SNAPSHOTS: _noop,
    JobName.MAINTAIN_QUEUES: _noop,
}


def test_router_refuses_missing_and_foreign_handlers() -> None:
    """A queue's router without the fan-out handler, or with a reminders handler, is a configuration error."""
    with pytest.raises(ConfigurationError, match="fan-out-snapshots"):
        JobRouter(QueueName.SNAPSHOTS, {JobName.SNAPSHOT: _noop})
    with pytest.raises(ConfigurationError, match="process-reminder"):
        JobRouter(QueueName.SNAPSHOTS, {**SNAPSHOT_HANDLERS, JobName.REMINDER: _noop})


def test_unknown_job_name_is_an_invalid_job() -> None:
    """A name not handled by the queue raises InvalidJob naming the job name, never completes."""
    router = JobRouter(QueueName.SNAPSHOTS, SNAPSHOT_HANDLERS)
    with pytest.raises(InvalidJob, match="job name"):
        router.route("process-reminder", {})


def test_known_job_is_decoded_for_its_handler() -> None:
    """A snapshot job's data is decoded into the domain payload and routed to its handler."""
    routed = JobRouter(QueueName.SNAPSHOTS, SNAPSHOT_HANDLERS).route(
        "process-snapshots", {"orgId": "o", "date": "2025-07-01", "extra": 1}
    )
    assert isinstance(routed.payload, SnapshotJob)
    assert (routed.name, routed.handler, routed.unknown_keys) == (JobName.SNAPSHOT, _noop, ("extra",))
