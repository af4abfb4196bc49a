"""KPI snapshots: computing an org's local day, and the hourly fan-out with its catch-up."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest

from domain.errors import InvalidJob, InvalidValue
from domain.jobs import SnapshotFanOutJob, SnapshotJob
from domain.models import DailySnapshot, DeliveryStatus, KpiFacts, Organization
from domain.outcomes import Published, Skipped, SnapshotStored
from domain.snapshots import SnapshotService, show_rate, snapshot_job_id
from domain.values import Channel, Money, OrgId
from tests.support.fakes.clock import FakeClock
from tests.support.worlds import MessagingWorld

FAN_OUT = SnapshotFanOutJob()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def facts(completed: int = 0, no_show: int = 0, cancelled: int = 0, booked: int = 0) -> KpiFacts:
    return KpiFacts(
        appointments_booked=booked,
        appointments_completed=completed,
        appointments_cancelled=cancelled,
        appointments_no_show=no_show,
        new_contacts=2,
        revenue_collected=Money(12_550, "USD"),
        outstanding_receivables=Money(40_000, "USD"),
        messages={(Channel.SMS, DeliveryStatus.SENT): 5, (Channel.EMAIL, DeliveryStatus.FAILED): 1},
        enrollments_started=1,
        enrollments_completed=0,
        dunning_recovered=Money(0, "USD"),
    )


@attrs.define(kw_only=True)
class World(MessagingWorld):
    service: SnapshotService = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.service = self.services.snapshots

    def org(self, org_id: str, zone_name: str = "UTC", *, active: bool = True) -> Organization:
        return self.orgs.add(Organization(OrgId(org_id), "Clinic", ZoneInfo(zone_name), "USD", active))

    def store_days(self, org: Organization, last: date, count: int) -> None:
        """Pretend the ``count`` local days up to ``last`` have snapshots already."""
        for n in range(count):
            day = last - timedelta(days=n)
            self.snapshots.snapshots[(org.id, day)] = DailySnapshot(org.id, day, facts(), None, utc(2020, 1, 1))

    def published(self) -> list[tuple[OrgId, date]]:
        jobs = [p.job for p in self.publisher.published]
        return [(j.org_id, j.date) for j in jobs if isinstance(j, SnapshotJob)]

    async def run_published(self) -> None:
        """Act as the snapshot worker: compute every published job (recomputing is harmless)."""
        for org_id, day in self.published():
            await self.service.compute(SnapshotJob(org_id, day))


@pytest.fixture
def world() -> World:
    return World(clock=FakeClock())


# --- show rate -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed", "no_show", "cancelled", "expected"),
    [
        (8, 2, 5, 0.8),
        (3, 0, 0, 1.0),
        (0, 4, 0, 0.0),
        (1, 2, 9, 1 / 3),
        (0, 0, 3, None),
        (0, 0, 0, None),
    ],
)
def test_show_rate_counts_completed_against_completed_and_no_shows(
    completed: int, no_show: int, cancelled: int, expected: float | None
) -> None:
    """The show rate is completed / (completed + no-show), ignores cancellations and is None with nothing due."""
    assert show_rate(facts(completed, no_show, cancelled)) == expected


# --- compute ---------------------------------------------------------------------------------------------------


async def test_compute_stores_the_days_facts_and_show_rate(world: World) -> None:
    """Computing a finished day stores its facts, its show rate and the computation instant."""
    org = world.org("org-1")
    world.clock.set(utc(2026, 1, 15, 1))
    world.kpi_facts.facts_by_window[(org.id, utc(2026, 1, 14))] = facts(completed=9, no_show=1, cancelled=4)

    outcome = await world.service.compute(SnapshotJob(org.id, date(2026, 1, 14)))

    assert outcome == SnapshotStored("2026-01-14")
    stored = await world.snapshots.get(org.id, date(2026, 1, 14))
    assert stored == DailySnapshot(
        org.id, date(2026, 1, 14), facts(completed=9, no_show=1, cancelled=4), 0.9, utc(2026, 1, 15, 1)
    )


@pytest.mark.parametrize(
    ("zone_name", "day", "start", "end"),
    [
        ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)),
        ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 4), utc(2026, 11, 2, 5)),
        ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)),
        ("Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)),
        ("Australia/Lord_Howe", date(2026, 10, 4), utc(2026, 10, 3, 13, 30), utc(2026, 10, 4, 13)),
        ("America/Santiago", date(2026, 9, 6), utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)),
    ],
)
async def test_compute_asks_for_the_orgs_local_day_in_utc(
    world: World, zone_name: str, day: date, start: datetime, end: datetime
) -> None:
    """The facts are asked for the UTC window of the org's local day, 23 or 25 hours long on DST days."""
    org = world.org("org-1", zone_name)
    world.clock.set(utc(2026, 12, 31))

    await world.service.compute(SnapshotJob(org.id, day))

    assert world.kpi_facts.asked == [(org.id, start, end)]


async def test_recomputing_a_day_overwrites_it(world: World) -> None:
    """A second computation of the same day replaces the first snapshot instead of adding one."""
    org = world.org("org-1")
    window_start = utc(2026, 1, 14)
    world.kpi_facts.facts_by_window[(org.id, window_start)] = facts(completed=1, no_show=1)
    world.clock.set(utc(2026, 1, 15, 1))
    await world.service.compute(SnapshotJob(org.id, date(2026, 1, 14)))

    world.kpi_facts.facts_by_window[(org.id, window_start)] = facts(completed=3, no_show=1)
    world.clock.set(utc(2026, 1, 16, 9))
    await world.service.compute(SnapshotJob(org.id, date(2026, 1, 14)))

    assert list(world.snapshots.snapshots) == [(org.id, date(2026, 1, 14))]
    stored = await world.snapshots.get(org.id, date(2026, 1, 14))
    assert stored is not None
    assert (stored.show_rate, stored.computed_at) == (0.75, utc(2026, 1, 16, 9))


async def test_a_day_not_over_in_the_orgs_zone_is_an_invalid_job(world: World) -> None:
    """At 03:00 UTC New York's previous day is still running: the job is refused naming the date, nothing stored."""
    org = world.org("org-ny", "America/New_York")
    world.clock.set(utc(2026, 1, 15, 3))

    with pytest.raises(InvalidJob) as raised:
        await world.service.compute(SnapshotJob(org.id, date(2026, 1, 14)))

    assert raised.value.field == "date"
    assert world.snapshots.snapshots == {}
    assert world.kpi_facts.asked == []


async def test_a_day_is_computable_from_its_last_instant_on(world: World) -> None:
    """The same New York day is accepted once its window has ended, at 05:00 UTC."""
    org = world.org("org-ny", "America/New_York")
    world.clock.set(utc(2026, 1, 15, 5))

    assert await world.service.compute(SnapshotJob(org.id, date(2026, 1, 14))) == SnapshotStored("2026-01-14")


async def test_unknown_or_inactive_org_is_skipped(world: World) -> None:
    """A job for a deleted or deactivated org is skipped with a reason and computes nothing."""
    inactive = world.org("org-off", active=False)

    assert await world.service.compute(SnapshotJob(OrgId("org-gone"), date(2026, 1, 14))) == Skipped("org_not_found")
    assert await world.service.compute(SnapshotJob(inactive.id, date(2026, 1, 14))) == Skipped("org_inactive")
    assert world.snapshots.snapshots == {}
    assert world.kpi_facts.asked == []


# --- fan-out ---------------------------------------------------------------------------------------------------


async def test_utc_org_at_0100_gets_yesterdays_job(world: World) -> None:
    """At 01:00 UTC a UTC org gets a job for yesterday, even though a snapshot of it exists (it is recomputed)."""
    org = world.org("org-1")
    world.store_days(org, date(2026, 1, 14), 7)
    world.clock.set(utc(2026, 1, 15, 1))

    assert await world.service.fan_out(FAN_OUT) == Published(1, 0)
    assert world.published() == [(org.id, date(2026, 1, 14))]
    assert world.publisher.published[0].job_id == "snapshot_org-1_2026-01-14"
    assert world.publisher.published[0].run_at is None


async def test_yesterday_is_not_due_before_0100_local(world: World) -> None:
    """At 00:00 UTC a UTC org's yesterday is over but not due yet: the grace hour publishes nothing for it."""
    org = world.org("org-1")
    world.store_days(org, date(2026, 1, 13), 7)
    world.clock.set(utc(2026, 1, 15, 0))

    assert await world.service.fan_out(FAN_OUT) == Published(0, 0)


@pytest.mark.parametrize(
    ("now", "picked"),
    [
        (utc(2026, 1, 15, 5), False),  # 00:00 EST
        (utc(2026, 1, 15, 6), True),  # 01:00 EST
        (utc(2026, 1, 15, 7), False),  # 02:00 EST
        (utc(2026, 7, 15, 4), False),  # 00:00 EDT
        (utc(2026, 7, 15, 5), True),  # 01:00 EDT
        (utc(2026, 7, 15, 6), False),  # 02:00 EDT
    ],
)
async def test_new_york_org_is_picked_at_0100_local(world: World, now: datetime, picked: bool) -> None:
    """A New York org's yesterday is scheduled at 06:00 UTC in winter and 05:00 UTC in summer, not an hour off."""
    org = world.org("org-ny", "America/New_York")
    yesterday = now.date() - timedelta(days=1)
    world.store_days(org, yesterday, 8)
    world.clock.set(now)

    await world.service.fan_out(FAN_OUT)

    assert world.published() == ([(org.id, yesterday)] if picked else [])


@pytest.mark.parametrize(
    ("zone_name", "now", "yesterday"),
    [
        ("Asia/Kathmandu", utc(2026, 1, 14, 20), date(2026, 1, 14)),  # 01:45 +05:45
        ("Australia/Lord_Howe", utc(2026, 1, 14, 14), date(2026, 1, 14)),  # 01:00 +11
        ("Australia/Lord_Howe", utc(2026, 7, 14, 15), date(2026, 7, 14)),  # 01:30 +10:30
        ("Pacific/Chatham", utc(2026, 1, 14, 12), date(2026, 1, 14)),  # 01:45 +13:45
    ],
)
async def test_odd_offset_zones_are_picked_in_their_0100_hour(
    world: World, zone_name: str, now: datetime, yesterday: date
) -> None:
    """Orgs in quarter- and half-hour zones are scheduled by the hourly UTC tick that falls in their 01:xx hour."""
    org = world.org("org-odd", zone_name)
    world.store_days(org, yesterday, 8)
    world.clock.set(now)
    assert await world.service.fan_out(FAN_OUT) == Published(1, 0)
    assert world.published() == [(org.id, yesterday)]

    world.publisher.published.clear()
    world.clock.set(now - timedelta(hours=1))
    assert await world.service.fan_out(FAN_OUT) == Published(0, 0)


async def test_catch_up_queues_the_last_seven_missing_days_then_nothing(world: World) -> None:
    """With no snapshots at all, one run queues the 7 most recent due days; after they are computed, none."""
    org = world.org("org-1")
    world.clock.set(utc(2026, 1, 15, 13))

    assert await world.service.fan_out(FAN_OUT) == Published(7, 0)
    assert world.published() == [(org.id, date(2026, 1, d)) for d in range(8, 15)]

    await world.run_published()
    world.publisher.published.clear()
    world.clock.set(utc(2026, 1, 15, 14))
    assert await world.service.fan_out(FAN_OUT) == Published(0, 0)


async def test_catch_up_fills_only_the_gaps(world: World) -> None:
    """Only the days without a snapshot are queued again, the stored ones are left alone."""
    org = world.org("org-1")
    world.store_days(org, date(2026, 1, 14), 7)
    del world.snapshots.snapshots[(org.id, date(2026, 1, 10))]
    del world.snapshots.snapshots[(org.id, date(2026, 1, 12))]
    world.clock.set(utc(2026, 1, 15, 9))

    assert await world.service.fan_out(FAN_OUT) == Published(2, 0)
    assert world.published() == [(org.id, date(2026, 1, 10)), (org.id, date(2026, 1, 12))]


async def test_a_second_run_publishes_nothing_new(world: World) -> None:
    """Deterministic ids make a repeated run (or a second worker) find every job already queued."""
    org = world.org("org-1")
    world.clock.set(utc(2026, 1, 15, 1))
    assert await world.service.fan_out(FAN_OUT) == Published(7, 0)

    assert await world.service.fan_out(FAN_OUT) == Published(0, 7)
    assert len(world.publisher.published) == 7
    assert {p.job_id for p in world.publisher.published} == {f"snapshot_{org.id}_2026-01-{d:02d}" for d in range(8, 15)}


async def test_inactive_orgs_are_left_out_of_the_fan_out(world: World) -> None:
    """Only active orgs get snapshot jobs."""
    active = world.org("org-on")
    world.org("org-off", active=False)
    world.clock.set(utc(2026, 1, 15, 1))

    await world.service.fan_out(FAN_OUT)

    assert {org_id for org_id, _ in world.published()} == {active.id}


def test_job_ids_are_deterministic_and_bullmq_safe() -> None:
    """Job ids name the org and the ISO date, and never contain ':' (BullMQ refuses it in custom ids)."""
    assert snapshot_job_id(OrgId("org-1"), date(2026, 1, 14)) == "snapshot_org-1_2026-01-14"
    assert snapshot_job_id(OrgId("a:b"), date(2026, 1, 14)) == "snapshot_a%3Ab_2026-01-14"
    assert snapshot_job_id(OrgId("a%3Ab"), date(2026, 1, 14)) == "snapshot_a%253Ab_2026-01-14"


def _first_tick_at_or_after(day_after: date, zone: ZoneInfo, ticks: list[datetime]) -> datetime:
    """The first hourly tick whose local wall time is 01:00 or later on ``day_after``."""
    due = datetime.combine(day_after, time(1, 0))
    return next(t for t in ticks if t.astimezone(zone).replace(tzinfo=None) >= due)


def _latest_due_day(instant: datetime, zone: ZoneInfo) -> date:
    """The spec: a local day is due from 01:00 local on the next day."""
    local = instant.astimezone(zone)
    return local.date() - timedelta(days=1 if local.time() >= time(1, 0) else 2)


@pytest.mark.parametrize(
    ("zone_name", "first_tick"),
    [
        ("America/New_York", utc(2026, 3, 6)),  # spring forward 2026-03-08
        ("America/New_York", utc(2026, 10, 30)),  # fall back 2026-11-01
        ("Europe/London", utc(2026, 3, 27)),  # 01:00 never happens on 2026-03-29
        ("Europe/London", utc(2026, 10, 23)),  # 01:xx happens twice on 2026-10-25
        ("Europe/Berlin", utc(2026, 3, 27)),
        ("Australia/Lord_Howe", utc(2026, 4, 3)),  # half-hour fall back 2026-04-05 at 02:00
        ("Australia/Lord_Howe", utc(2026, 10, 2)),  # half-hour spring forward 2026-10-04
        ("Pacific/Chatham", utc(2026, 9, 25)),
        ("America/Santiago", utc(2026, 9, 4)),  # midnight never happens on 2026-09-06
        ("Asia/Kathmandu", utc(2026, 1, 1)),
    ],
)
async def test_hourly_ticks_queue_each_day_once_as_soon_as_it_is_due(
    world: World, zone_name: str, first_tick: datetime
) -> None:
    """Over four days of hourly ticks across a DST change, each local day is queued once, at its first due tick."""
    zone = ZoneInfo(zone_name)
    org = world.org("org-1", zone_name)
    ticks = [first_tick + timedelta(hours=h) for h in range(4 * 24)]
    up_to_date = _latest_due_day(first_tick - timedelta(hours=1), zone)
    world.store_days(org, up_to_date, 8)
    first_published: dict[date, datetime] = {}
    repeats = 0
    for tick in ticks:
        world.clock.set(tick)
        outcome = await world.service.fan_out(FAN_OUT)
        repeats += outcome.already_queued
        for _, day in world.published():
            first_published.setdefault(day, tick)
        await world.run_published()

    last_due = _latest_due_day(ticks[-1], zone)
    expected_days = [up_to_date + timedelta(days=n) for n in range(1, (last_due - up_to_date).days + 1)]
    assert sorted(first_published) == expected_days
    for day, tick in first_published.items():
        assert tick == _first_tick_at_or_after(day + timedelta(days=1), zone, ticks)
    assert len(world.publisher.published) == len(expected_days)
    # a second tick in a repeated 01:xx hour (fall back) finds its job already queued; nothing else repeats
    scheduled_hour_ticks = Counter(t.astimezone(zone).date() for t in ticks if t.astimezone(zone).hour == 1)
    assert repeats == sum(n - 1 for n in scheduled_hour_ticks.values())


# --- backfill --------------------------------------------------------------------------------------------------


async def test_backfill_recomputes_every_day_of_the_range(world: World) -> None:
    """Backfill computes each local day of the range directly and returns how many it stored."""
    org = world.org("org-ny", "America/New_York")
    world.clock.set(utc(2026, 3, 20))

    assert await world.service.backfill(org.id, date(2026, 3, 7), date(2026, 3, 9)) == 3

    assert sorted(d for _, d in world.snapshots.snapshots) == [date(2026, 3, d) for d in (7, 8, 9)]
    assert [end - start for _, start, end in world.kpi_facts.asked] == [
        timedelta(hours=24),
        timedelta(hours=23),
        timedelta(hours=24),
    ]


@pytest.mark.parametrize(
    ("org_id", "first", "last", "what"),
    [
        ("org-gone", date(2026, 1, 1), date(2026, 1, 2), "orgId"),
        ("org-off", date(2026, 1, 1), date(2026, 1, 2), "orgId"),
        ("org-1", date(2026, 1, 5), date(2026, 1, 2), "date range"),
        ("org-1", date(2026, 1, 10), date(2026, 1, 15), "last date"),
    ],
)
async def test_backfill_refuses_a_bad_request_before_computing_anything(
    world: World, org_id: str, first: date, last: date, what: str
) -> None:
    """An unknown or inactive org, a reversed range or a day not over yet is refused and nothing is computed."""
    world.org("org-1")
    world.org("org-off", active=False)
    world.clock.set(utc(2026, 1, 15, 12))

    with pytest.raises(InvalidValue) as raised:
        await world.service.backfill(OrgId(org_id), first, last)

    assert raised.value.what == what
    assert world.kpi_facts.asked == []
