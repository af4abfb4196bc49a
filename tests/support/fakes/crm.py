"""In-memory fakes of the CRM read ports: Organizations, Contacts, Appointments, Invoices, Templates.

Each passes its tests/contract suite (test_organizations, test_appointments, test_invoices, test_templates) with
the Postgres adapter."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import attrs

from domain.models import Appointment, AppointmentStatus, Contact, Organization, ReminderCandidate, Template
from domain.values import AppointmentId, Channel, ContactId, Money, OrgId


@attrs.define
class InMemoryOrganizations:
    orgs: dict[OrgId, Organization] = attrs.Factory(dict)

    def add(self, org: Organization) -> Organization:
        self.orgs[org.id] = org
        return org

    async def get(self, org_id: OrgId) -> Organization | None:
        return self.orgs.get(org_id)

    async def active(self) -> Sequence[Organization]:
        return [o for _, o in sorted(self.orgs.items()) if o.active]


@attrs.define
class InMemoryContacts:
    contacts: dict[tuple[OrgId, ContactId], Contact] = attrs.Factory(dict)

    def add(self, contact: Contact) -> Contact:
        self.contacts[(contact.org_id, contact.id)] = contact
        return contact

    async def get(self, org_id: OrgId, contact_id: ContactId) -> Contact | None:
        return self.contacts.get((org_id, contact_id))


@attrs.define
class InMemoryAppointments:
    orgs: InMemoryOrganizations
    contacts: InMemoryContacts
    appointments: dict[tuple[OrgId, AppointmentId], Appointment] = attrs.Factory(dict)
    created_at: dict[tuple[OrgId, AppointmentId], datetime] = attrs.Factory(dict)

    def add(self, appointment: Appointment, created_at: datetime | None = None) -> Appointment:
        key = (appointment.org_id, appointment.id)
        self.appointments[key] = appointment
        self.created_at[key] = created_at or datetime(2000, 1, 1, tzinfo=UTC)
        return appointment

    async def get(self, org_id: OrgId, appointment_id: AppointmentId) -> Appointment | None:
        return self.appointments.get((org_id, appointment_id))

    async def upcoming_between(self, start: datetime, end: datetime) -> Sequence[ReminderCandidate]:
        found = []
        for a in self.appointments.values():
            org = self.orgs.orgs.get(a.org_id)
            contact = self.contacts.contacts.get((a.org_id, a.contact_id))
            if org is None or not org.active or contact is None:
                continue
            if a.status.is_upcoming and start <= a.starts_at < end:
                found.append(ReminderCandidate(a, contact.zone or org.zone, contact.first_name, org.name))
        return sorted(found, key=lambda c: (c.appointment.starts_at, c.appointment.id))

    async def booked_since(self, org_id: OrgId, contact_id: ContactId, since: datetime) -> bool:
        return any(
            a.org_id == org_id
            and a.contact_id == contact_id
            and a.status is not AppointmentStatus.CANCELLED
            and self.created_at[(a.org_id, a.id)] >= since
            for a in self.appointments.values()
        )


@attrs.define
class InMemoryInvoices:
    """Balances set directly per contact, in minor units."""

    balances: dict[tuple[OrgId, ContactId], int] = attrs.Factory(dict)

    def owe(self, org_id: OrgId, contact_id: ContactId, minor: int) -> None:
        self.balances[(org_id, contact_id)] = minor

    async def outstanding_balance(self, org_id: OrgId, contact_id: ContactId, currency: str) -> Money:
        return Money(max(0, self.balances.get((org_id, contact_id), 0)), currency)


@attrs.define
class InMemoryTemplates:
    templates: dict[tuple[OrgId, str, Channel], Template] = attrs.Factory(dict)

    def add(self, template: Template) -> Template:
        self.templates[(template.org_id, template.name, template.channel)] = template
        return template

    async def get(self, org_id: OrgId, name: str, channel: Channel) -> Template | None:
        return self.templates.get((org_id, name, channel))
