"""``PatchedWorker`` builds the keys and arguments of ``moveToFinished`` and ``moveToActive`` itself (queue keys built
once); they must be exactly what bullmq 3.4.4's ``Scripts`` sends, whatever the job's or the worker's options."""

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


@pytest.mark.parametrize("limiter", [None, {"max": 2, "duration": 1000}])
async def test_activation_keys_and_args_are_bullmqs(limiter: dict[str, int] | None) -> None:
    """``moveToActive`` over the pipelined connection sends what bullmq 3.4.4's ``Scripts.moveToActive`` sends."""
    options: dict[str, Any] = {"prefix": "cf", "autorun": False, "lockDuration": 20_000}
    if limiter is not None:
        options["limiter"] = limiter
    worker = PatchedWorker("reminders", _noop, options)
    sent: list[tuple[list[str], list[Any]]] = []

    async def recorded(keys: list[str], args: list[Any]) -> None:
        sent.append((keys, args))

    worker.scripts.commands["moveToActive"] = recorded  # what bullmq would send through its pool
    await worker.scripts.moveToActive("tok:1", worker.opts)
    ((theirs_keys, theirs_args),) = sent
    assert worker._activation_keys == theirs_keys
    ours = worker._activation_args("tok:1")
    assert [ours[0], msgpack.unpackb(ours[2])] == [theirs_args[0], msgpack.unpackb(theirs_args[2])]
    assert abs(ours[1] - theirs_args[1]) < 1000  # the timestamp, ms
