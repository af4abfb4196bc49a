"""SnapshotStore contract: one snapshot per org and date, replaced on recompute, dates found by range."""

from __future__ import annotations

from datetime import date, timedelta

import attrs

from domain.models import DailySnapshot, DeliveryStatus, KpiFacts
from domain.values import Channel, Money, OrgId
from tests.support.backends import Backend
from tests.support.builders import T0

ORG = OrgId("org-1")


def snapshot(day: date, *, booked: int = 4, org_id: OrgId = ORG, show_rate: float | None = 0.75) -> DailySnapshot:
    facts = KpiFacts(
        appointments_booked=booked,
        appointments_completed=3,
        appointments_cancelled=1,
        appointments_no_show=1,
        new_contacts=2,
        revenue_collected=Money(12_550, "EUR"),
        outstanding_receivables=Money(99_901, "EUR"),
        messages={(Channel.SMS, DeliveryStatus.SENT): 5, (Channel.EMAIL, DeliveryStatus.FAILED): 1},
        enrollments_started=2,
        enrollments_completed=1,
        dunning_recovered=Money(2_500, "EUR"),
    )
    return DailySnapshot(org_id, day, facts, show_rate, T0)


async def test_upsert_then_get_round_trips(backend: Backend) -> None:
    """A stored snapshot comes back equal: counts, money, per-channel messages, show rate, computed time."""
    stored = snapshot(date(2026, 3, 9))
    await backend.snapshots.upsert(stored)
    assert await backend.snapshots.get(ORG, date(2026, 3, 9)) == stored
    assert await backend.snapshots.get(ORG, date(2026, 3, 10)) is None


async def test_upsert_replaces_the_same_day(backend: Backend) -> None:
    """Recomputing a day overwrites it, including a show rate that became None and empty messages."""
    await backend.snapshots.upsert(snapshot(date(2026, 3, 9)))
    recomputed = attrs.evolve(
        snapshot(date(2026, 3, 9), booked=9, show_rate=None),
        computed_at=T0 + timedelta(hours=1),
    )
    recomputed = attrs.evolve(recomputed, facts=attrs.evolve(recomputed.facts, messages={}))
    await backend.snapshots.upsert(recomputed)
    assert await backend.snapshots.get(ORG, date(2026, 3, 9)) == recomputed


async def test_dates_present_is_an_inclusive_range_of_this_org(backend: Backend) -> None:
    """Dates on both bounds count; other orgs' and out-of-range dates do not."""
    for day in (date(2026, 3, 1), date(2026, 3, 5), date(2026, 3, 7), date(2026, 3, 8)):
        await backend.snapshots.upsert(snapshot(day))
    await backend.snapshots.upsert(snapshot(date(2026, 3, 6), org_id=OrgId("org-2")))
    found = await backend.snapshots.dates_present(ORG, date(2026, 3, 5), date(2026, 3, 7))
    assert found == {date(2026, 3, 5), date(2026, 3, 7)}
