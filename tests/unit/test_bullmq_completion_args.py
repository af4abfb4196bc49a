"""``PatchedWorker`` builds the keys and arguments of ``moveToFinished`` itself (queue keys built once); they must be
exactly what bullmq 3.4.4's ``Scripts.moveToFinishedArgs`` sends for a completed job, whatever the job's options."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from bullmq import Job as BullJob

from adapters.bullmq.patched_worker import PatchedWorker


async def _noop(_job: BullJob, _token: str) -> None:
    return None


@pytest.fixture
def worker() -> PatchedWorker:
    options = {"prefix": "cf", "autorun": False, "lockDuration": 20_000, "metrics": {"maxDataPoints": 60}}
    return PatchedWorker("reminders", _noop, options)


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"attempts": 3, "removeOnComplete": True},
        {"removeOnComplete": 100, "failParentOnFailure": True},
        {"removeOnComplete": {"age": 3600, "count": 10}, "ignoreDependencyOnFailure": True},
        {"removeOnComplete": False, "removeDependencyOnFailure": True},
        {"removeOnComplete": None, "continueParentOnFailure": True},
    ],
)
@pytest.mark.parametrize("fetch_next", [True, False])
@pytest.mark.parametrize("result", [{"outcome": "sent", "count": 2}, None, "text"])
def test_completion_args_are_bullmqs(
    worker: PatchedWorker, opts: dict[str, Any], fetch_next: bool, result: Any
) -> None:
    job = BullJob(worker, "process-reminder", {"orgId": "o1"}, dict(opts))
    job.id = "42"
    job.attemptsMade = 1
    ours = worker._completion_args(job, "tok:1", result, fetch_next)
    theirs = worker.scripts.moveToCompletedArgs(job, result, opts.get("removeOnComplete", False), "tok:1", fetch_next)
    assert ours[0] == theirs[0]
    assert _comparable(ours[1]) == _comparable(theirs[1])


def _comparable(args: list[Any]) -> list[Any]:
    """The arguments with the timestamp dropped and the packed options unpacked."""
    return [*args[:1], *args[2:-1], msgpack.unpackb(args[-1])]
