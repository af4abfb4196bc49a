"""KPI snapshots: one org's figures for one of its local calendar days, and the fan-out that schedules them.

Rules:
- A snapshot covers the org's local day in its IANA zone (``domain.local_days``), computed only once that day is
  over. Recomputing a day overwrites it, so every job here is safe to run twice.
- ``show_rate`` = completed / (completed + no-show): of the appointments that were due and not called off, the
  share the client came to. Cancelled appointments count on neither side (nobody was expected). None when
  nothing was completed or missed.
- A job for an unknown (deleted) or inactive org is not malformed, just pointless now: Skipped, not InvalidJob.
- Fan-out (run hourly, ``0 * * * *`` UTC): a local day is *due* from 01:00 local of the next day. Every active
  org whose local time is 01:xx gets a job for yesterday; and every active org gets a job for each of its 7 most
  recent due days that has no snapshot, whatever the hour, so a missed tick (downtime, a DST jump over 01:00) is
  repaired on the next run. Job ids are deterministic (``snapshot_<orgId>_<YYYY-MM-DD>``), so two workers, a
  repeated 01:xx hour on a fall-back night or a re-run queue each (org, day) once.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import attrs

from domain.errors import InvalidJob, InvalidValue
from domain.jobs import SnapshotFanOutJob, SnapshotJob, custom_job_id
from domain.local_days import day_window
from domain.models import DailySnapshot, KpiFacts, Organization
from domain.outcomes import Published, Skipped, SnapshotStored
from domain.ports import Clock, JobPublisher, KpiFactsSource, Organizations, SnapshotStore
from domain.values import OrgId

DUE_AT = time(1, 0)  # local time of the next day from which a day's snapshot is due
CATCH_UP_DAYS = 7  # how many of the most recent due days the fan-out repairs

_ONE_DAY = timedelta(days=1)


def show_rate(facts: KpiFacts) -> float | None:
    """Completed / (completed + no-show); None when the denominator is 0. Cancelled ones are not counted."""
    expected = facts.appointments_completed + facts.appointments_no_show
    if expected == 0:
        return None
    return facts.appointments_completed / expected


def snapshot_job_id(org_id: OrgId, day: date) -> str:
    """``snapshot_<orgId>_<YYYY-MM-DD>``."""
    return custom_job_id("snapshot", org_id, day.isoformat())


def latest_due_day(org: Organization, now: datetime) -> date:
    """The most recent local day of ``org`` whose snapshot is due at ``now`` (from 01:00 local the day after)."""
    local_now = now.astimezone(org.zone)
    days_back = 1 if local_now.time() >= DUE_AT else 2
    return local_now.date() - timedelta(days=days_back)


def _is_scheduled_hour(org: Organization, now: datetime) -> bool:
    """Whether the org's local time is 01:xx, the hour its yesterday is scheduled in."""
    return now.astimezone(org.zone).hour == DUE_AT.hour


@attrs.define
class SnapshotService:
    organizations: Organizations
    kpi_facts: KpiFactsSource
    snapshots: SnapshotStore
    clock: Clock
    publisher: JobPublisher

    async def compute(self, job: SnapshotJob) -> SnapshotStored | Skipped:
        """Compute and store (overwriting) the org's snapshot of its local day ``job.date``.

        Raises InvalidJob("date") when that day is not over yet in the org's zone.
        """
        org = await self.organizations.get(job.org_id)
        if org is None:
            return Skipped("org_not_found")
        if not org.active:
            return Skipped("org_inactive")
        now = self.clock.now()
        start, end = day_window(job.date, org.zone)
        if end > now:
            raise InvalidJob("date", "is a local day that is not over yet in the organization's zone")
        facts = await self.kpi_facts.facts(org, start, end)
        await self.snapshots.upsert(DailySnapshot(org.id, job.date, facts, show_rate(facts), computed_at=now))
        return SnapshotStored(job.date.isoformat())

    async def fan_out(self, job: SnapshotFanOutJob) -> Published:
        """Publish a ``process-snapshots`` job for each (active org, day) that is scheduled now or missing."""
        now = self.clock.now()
        count = already_queued = 0
        for org in await self.organizations.active():
            for day in await self._days_to_queue(org, now):
                if await self.publisher.publish(SnapshotJob(org.id, day), snapshot_job_id(org.id, day)):
                    count += 1
                else:
                    already_queued += 1
        return Published(count, already_queued)

    async def _days_to_queue(self, org: Organization, now: datetime) -> list[date]:
        """Yesterday when the org's local time is 01:xx, plus its recent due days that have no snapshot."""
        last = latest_due_day(org, now)
        first = last - timedelta(days=CATCH_UP_DAYS - 1)
        present = await self.snapshots.dates_present(org.id, first, last)
        days = {first + timedelta(days=n) for n in range(CATCH_UP_DAYS)} - present
        if _is_scheduled_hour(org, now):
            days.add(last)  # at 01:xx the latest due day is yesterday
        return sorted(days)

    async def backfill(self, org_id: OrgId, first: date, last: date) -> int:
        """Recompute (overwriting) the org's snapshots of the local days ``first..last``; return how many stored.

        The range is checked before anything is computed (see ``backfill_days``).
        """
        stored = 0
        for day in await self.backfill_days(org_id, first, last):
            if isinstance(await self.compute(SnapshotJob(org_id, day)), SnapshotStored):
                stored += 1
        return stored

    async def backfill_days(self, org_id: OrgId, first: date, last: date) -> list[date]:
        """The local days ``first..last`` a backfill of the org computes, each with ``compute(SnapshotJob(...))``.

        InvalidValue when the org is unknown or inactive, when ``last`` is before ``first``, or when ``last`` is not
        over yet in the org's zone.
        """
        org = await self.organizations.get(org_id)
        if org is None or not org.active:
            raise InvalidValue("orgId", "names no active organization")
        if last < first:
            raise InvalidValue("date range", "ends before it starts")
        if day_window(last, org.zone)[1] > self.clock.now():
            raise InvalidValue("last date", "is a local day that is not over yet in the organization's zone")
        return [first + _ONE_DAY * n for n in range((last - first).days + 1)]
