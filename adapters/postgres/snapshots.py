"""Daily KPI snapshots: one row per (org, local date), replaced when a day is recomputed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date

import asyncpg
import attrs

from adapters.postgres.pool import PostgresDatabase
from domain.models import DailySnapshot, DeliveryStatus, KpiFacts
from domain.values import Channel, Money, OrgId

_UPSERT = """
    insert into daily_snapshots (
        org_id, date, currency, appointments_booked, appointments_completed, appointments_cancelled,
        appointments_no_show, show_rate, new_contacts, revenue_collected_minor, outstanding_minor,
        dunning_recovered_minor, messages, enrollments_started, enrollments_completed, computed_at)
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16)
    on conflict (org_id, date) do update set
        currency = excluded.currency,
        appointments_booked = excluded.appointments_booked,
        appointments_completed = excluded.appointments_completed,
        appointments_cancelled = excluded.appointments_cancelled,
        appointments_no_show = excluded.appointments_no_show,
        show_rate = excluded.show_rate,
        new_contacts = excluded.new_contacts,
        revenue_collected_minor = excluded.revenue_collected_minor,
        outstanding_minor = excluded.outstanding_minor,
        dunning_recovered_minor = excluded.dunning_recovered_minor,
        messages = excluded.messages,
        enrollments_started = excluded.enrollments_started,
        enrollments_completed = excluded.enrollments_completed,
        computed_at = excluded.computed_at
"""


def messages_json(messages: Mapping[tuple[Channel, DeliveryStatus], int]) -> str:
    """``{"sms": {"sent": 3, "failed": 1}}``: the per-channel, per-status counts as stored."""
    nested: dict[str, dict[str, int]] = {}
    for (channel, status), count in messages.items():
        nested.setdefault(channel.value, {})[status.value] = count
    return json.dumps(nested, sort_keys=True)


def messages_from_json(text: str) -> dict[tuple[Channel, DeliveryStatus], int]:
    return {
        (Channel(channel), DeliveryStatus(status)): count
        for channel, by_status in json.loads(text).items()
        for status, count in by_status.items()
    }


def _snapshot(row: asyncpg.Record) -> DailySnapshot:
    currency = row["currency"]
    facts = KpiFacts(
        appointments_booked=row["appointments_booked"],
        appointments_completed=row["appointments_completed"],
        appointments_cancelled=row["appointments_cancelled"],
        appointments_no_show=row["appointments_no_show"],
        new_contacts=row["new_contacts"],
        revenue_collected=Money(row["revenue_collected_minor"], currency),
        outstanding_receivables=Money(row["outstanding_minor"], currency),
        messages=messages_from_json(row["messages"]),
        enrollments_started=row["enrollments_started"],
        enrollments_completed=row["enrollments_completed"],
        dunning_recovered=Money(row["dunning_recovered_minor"], currency),
    )
    return DailySnapshot(OrgId(row["org_id"]), row["date"], facts, row["show_rate"], row["computed_at"])


@attrs.define
class PostgresSnapshotStore:
    db: PostgresDatabase

    async def upsert(self, snapshot: DailySnapshot) -> None:
        f = snapshot.facts
        await self.db.execute(
            _UPSERT,
            snapshot.org_id,
            snapshot.date,
            f.revenue_collected.currency,
            f.appointments_booked,
            f.appointments_completed,
            f.appointments_cancelled,
            f.appointments_no_show,
            snapshot.show_rate,
            f.new_contacts,
            f.revenue_collected.minor,
            f.outstanding_receivables.minor,
            f.dunning_recovered.minor,
            messages_json(f.messages),
            f.enrollments_started,
            f.enrollments_completed,
            snapshot.computed_at,
        )

    async def get(self, org_id: OrgId, day: date) -> DailySnapshot | None:
        row = await self.db.fetchrow("select * from daily_snapshots where org_id = $1 and date = $2", org_id, day)
        return _snapshot(row) if row else None

    async def dates_present(self, org_id: OrgId, first: date, last: date) -> set[date]:
        found = await self.db.fetch(
            "select date from daily_snapshots where org_id = $1 and date between $2 and $3", org_id, first, last
        )
        return {row["date"] for row in found}
