"""Read-side repositories over the CRM's tables: organizations, contacts, appointments, invoices, templates.

Ids sort with ``collate "C"`` (byte order) so "ordered by id" means what Python's ``sorted`` means.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from adapters.postgres import rows
from adapters.postgres.pool import PostgresDatabase
from domain.models import Appointment, Contact, Organization, ReminderCandidate, Template
from domain.values import AppointmentId, Channel, ContactId, Money, OrgId, zone

_ORGANIZATION = """
    select id, name, time_zone, currency, active, transactional_window_start, transactional_window_end,
           marketing_window_start, marketing_window_end, dunning_policy::text as dunning_policy
      from organizations
"""


@attrs.define
class PostgresOrganizations:
    db: PostgresDatabase

    async def get(self, org_id: OrgId) -> Organization | None:
        row = await self.db.fetchrow(_ORGANIZATION + " where id = $1", org_id)
        return rows.organization(row) if row else None

    async def active(self) -> Sequence[Organization]:
        found = await self.db.fetch(_ORGANIZATION + ' where active order by id collate "C"')
        return [rows.organization(row) for row in found]


@attrs.define
class PostgresContacts:
    db: PostgresDatabase

    async def get(self, org_id: OrgId, contact_id: ContactId) -> Contact | None:
        row = await self.db.fetchrow(
            "select * from contacts where org_id = $1 and id = $2 and deleted_at is null", org_id, contact_id
        )
        return rows.contact(row) if row else None


# The reminder scan: a range scan of the partial index appointments_upcoming_starts_at, then the contact and org.
UPCOMING_BETWEEN_SQL = """
    select a.id, a.org_id, a.contact_id, a.starts_at, a.status,
           c.first_name, c.time_zone as contact_zone, o.time_zone as org_zone, o.name as org_name
      from appointments a
      join organizations o on o.id = a.org_id
      join contacts c on c.org_id = a.org_id and c.id = a.contact_id
     where a.starts_at >= $1 and a.starts_at < $2
       and a.status in ('scheduled', 'confirmed')
       and o.active and c.deleted_at is null
     order by a.starts_at, a.id collate "C", a.org_id collate "C"
"""


@attrs.define
class PostgresAppointments:
    db: PostgresDatabase

    async def get(self, org_id: OrgId, appointment_id: AppointmentId) -> Appointment | None:
        row = await self.db.fetchrow(
            "select id, org_id, contact_id, starts_at, status from appointments where org_id = $1 and id = $2",
            org_id,
            appointment_id,
        )
        return rows.appointment(row) if row else None

    async def upcoming_between(self, start: datetime, end: datetime) -> Sequence[ReminderCandidate]:
        found = await self.db.fetch(UPCOMING_BETWEEN_SQL, start, end)
        org_zones = {name: zone(name) for name in {row["org_zone"] for row in found}}
        return [
            ReminderCandidate(
                appointment=rows.appointment(row),
                zone=rows.optional_zone(row["contact_zone"]) or org_zones[row["org_zone"]],
                contact_first_name=row["first_name"],
                org_name=row["org_name"],
            )
            for row in found
        ]

    async def booked_since(self, org_id: OrgId, contact_id: ContactId, since: datetime) -> bool:
        found: bool = await self.db.fetchval(
            "select exists (select 1 from appointments where org_id = $1 and contact_id = $2"
            " and created_at >= $3 and status <> 'cancelled')",
            org_id,
            contact_id,
            since,
        )
        return found


@attrs.define
class PostgresInvoices:
    db: PostgresDatabase

    async def outstanding_balance(self, org_id: OrgId, contact_id: ContactId, currency: str) -> Money:
        """Per open invoice in ``currency``: its amount less its payments, never below zero; then summed (an
        overpaid invoice does not pay for another)."""
        owed: int = await self.db.fetchval(
            """
            select coalesce(sum(greatest(i.amount_minor - coalesce(paid.total, 0), 0)), 0)::bigint
              from invoices i
              left join lateral (
                   select sum(p.amount_minor) as total from payments p
                    where p.org_id = i.org_id and p.invoice_id = i.id and p.currency = i.currency
              ) paid on true
             where i.org_id = $1 and i.contact_id = $2 and i.status = 'open' and i.currency = $3
            """,
            org_id,
            contact_id,
            currency,
        )
        return Money(owed, currency)


@attrs.define
class PostgresTemplates:
    db: PostgresDatabase

    async def get(self, org_id: OrgId, name: str, channel: Channel) -> Template | None:
        row = await self.db.fetchrow(
            "select subject, body, ai_instruction, ai_required_literals from message_templates"
            " where org_id = $1 and name = $2 and channel = $3",
            org_id,
            name,
            channel.value,
        )
        if row is None:
            return None
        literals = tuple(row["ai_required_literals"])
        return Template(org_id, name, channel, row["body"], row["subject"], row["ai_instruction"], literals)
