"""Fakes of the KPI ports: KpiFactsSource and SnapshotStore.

InMemorySnapshotStore passes tests/contract/test_snapshot_store.py with the Postgres adapter; FakeKpiFactsSource
returns the facts a test set (the real source is checked against PostgreSQL in tests/contract/test_kpi_facts.py)."""

from __future__ import annotations

from datetime import date, datetime

import attrs

from domain.models import DailySnapshot, KpiFacts, Organization
from domain.values import Money, OrgId


@attrs.define
class FakeKpiFactsSource:
    """Returns the facts set for (org, start); records every window it was asked for."""

    facts_by_window: dict[tuple[OrgId, datetime], KpiFacts] = attrs.Factory(dict)
    asked: list[tuple[OrgId, datetime, datetime]] = attrs.Factory(list)

    async def facts(self, org: Organization, start: datetime, end: datetime) -> KpiFacts:
        self.asked.append((org.id, start, end))
        found = self.facts_by_window.get((org.id, start))
        if found is not None:
            return found
        zero = Money.zero(org.currency)
        return KpiFacts(0, 0, 0, 0, 0, zero, zero, {}, 0, 0, zero)


@attrs.define
class InMemorySnapshotStore:
    snapshots: dict[tuple[OrgId, date], DailySnapshot] = attrs.Factory(dict)

    async def upsert(self, snapshot: DailySnapshot) -> None:
        self.snapshots[(snapshot.org_id, snapshot.date)] = snapshot

    async def get(self, org_id: OrgId, day: date) -> DailySnapshot | None:
        return self.snapshots.get((org_id, day))

    async def dates_present(self, org_id: OrgId, first: date, last: date) -> set[date]:
        return {d for (o, d) in self.snapshots if o == org_id and first <= d <= last}
