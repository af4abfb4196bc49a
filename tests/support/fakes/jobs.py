"""The fake of the JobPublisher port: records published jobs; a job id already published on its queue is refused."""

from __future__ import annotations

from datetime import datetime

import attrs

from domain.jobs import Job, job_type_of


@attrs.frozen
class PublishedJob:
    job: Job
    job_id: str
    run_at: datetime | None


@attrs.define
class FakeJobPublisher:
    published: list[PublishedJob] = attrs.Factory(list)

    async def publish(self, job: Job, job_id: str, run_at: datetime | None = None) -> bool:
        queue = job_type_of(job).queue
        if any(p.job_id == job_id and job_type_of(p.job).queue is queue for p in self.published):
            return False
        self.published.append(PublishedJob(job, job_id, run_at))
        return True
