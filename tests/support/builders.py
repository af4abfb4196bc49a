"""Small builders of fixture values shared by the contract suites."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.models import Appointment, AppointmentStatus, Contact, Organization
from domain.values import AppointmentId, Channel, ContactId, EmailAddress, OrgId, PhoneNumber, zone

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
FAR_DEADLINE = datetime(3000, 1, 1, tzinfo=UTC)
"""A send claim's deadline no test reaches (``SmsSender.send``), for tests of a sender outside its claim."""


def org(org_id: str = "org-1", *, active: bool = True, zone_name: str = "America/New_York") -> Organization:
    return Organization(OrgId(org_id), f"Clinic {org_id}", zone(zone_name), "USD", active=active)


def contact(
    contact_id: str = "c-1",
    org_id: str = "org-1",
    *,
    zone_name: str | None = "Europe/Paris",
    phone: str | None = "+14155550100",
    email: str | None = "Ada@Example.com",
) -> Contact:
    return Contact(
        ContactId(contact_id),
        OrgId(org_id),
        "Ada",
        PhoneNumber(phone) if phone else None,
        EmailAddress(email) if email else None,
        zone(zone_name) if zone_name else None,
        preferred_channel=Channel.EMAIL,
        sms_consent=False,
        email_consent=True,
        marketing_consent=True,
        created_at=datetime(2025, 5, 1, 9, 30, tzinfo=UTC),
    )


def appointment(
    appointment_id: str,
    starts_at: datetime,
    *,
    org_id: str = "org-1",
    contact_id: str = "c-1",
    status: AppointmentStatus = AppointmentStatus.SCHEDULED,
) -> Appointment:
    return Appointment(AppointmentId(appointment_id), OrgId(org_id), ContactId(contact_id), starts_at, status)
