"""The JobPublisher port's contract, run on the in-memory fake and on the BullMQ publisher (the shared Redis, a key
prefix of the test's own): a job id is added once per queue, whatever is published under it later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from adapters.bullmq.publisher import BullmqJobPublisher
from domain.jobs import NurtureJob, SnapshotJob
from domain.ports import JobPublisher
from domain.values import ContactId, OrgId
from tests.support.builders import T0
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.jobs import FakeJobPublisher
from tests.support.scratch import redis_prefix

NURTURE = NurtureJob(OrgId("org-1"), ContactId("c-1"), 2, "welcome", {"firstName": "Ada"})
SNAPSHOT = SnapshotJob(OrgId("org-1"), date(2026, 3, 10))


@pytest.fixture(params=["fake", "bullmq"])
async def publisher(request: pytest.FixtureRequest) -> AsyncIterator[JobPublisher]:
    if request.param == "fake":
        yield FakeJobPublisher()
    else:
        async with redis_prefix() as (client, prefix):
            yield BullmqJobPublisher(client, prefix, FakeClock(T0))


async def test_a_job_id_is_added_once(publisher: JobPublisher) -> None:
    """The same id again is refused (False), with the same job or another one; a new id is added."""
    first = await publisher.publish(NURTURE, "nurture-enr1-step2")
    again = await publisher.publish(NURTURE, "nurture-enr1-step2")
    other_job = await publisher.publish(NurtureJob(OrgId("org-1"), ContactId("c-2"), 1, "hi"), "nurture-enr1-step2")
    new_id = await publisher.publish(NURTURE, "nurture-enr1-step3")
    assert (first, again, other_job, new_id) == (True, False, False, True)


async def test_ids_are_per_queue(publisher: JobPublisher) -> None:
    """One id on two queues is two jobs."""
    nurture = await publisher.publish(NURTURE, "org1-20260310")
    snapshot = await publisher.publish(SNAPSHOT, "org1-20260310")
    assert (nurture, snapshot) == (True, True)


async def test_a_delayed_job_is_added_once(publisher: JobPublisher) -> None:
    """``run_at`` in the future or in the past adds the job; its id is then taken as any other."""
    later = await publisher.publish(SNAPSHOT, "snap-later", T0 + timedelta(hours=1))
    past = await publisher.publish(SNAPSHOT, "snap-past", T0 - timedelta(hours=1))
    again = await publisher.publish(SNAPSHOT, "snap-later", T0 + timedelta(hours=2))
    assert (later, past, again) == (True, True, False)
