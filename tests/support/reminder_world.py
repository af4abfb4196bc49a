"""The ReminderService of the unit tests' world (wired by production's ``build_services`` to in-memory fakes), with
builders for orgs, contacts and appointments."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import attrs

from domain.models import (
    DEFAULT_TRANSACTIONAL_WINDOW,
    Appointment,
    AppointmentStatus,
    Contact,
    Organization,
    SendWindow,
)
from domain.reminders import ReminderService
from domain.values import AppointmentId, Channel, ContactId, EmailAddress, PhoneNumber
from tests.support.fakes.clock import FakeClock
from tests.support.worlds import CONTACT, ORG, MessagingWorld

APPOINTMENT = AppointmentId("a-1")


def local(zone: str, year: int, month: int, day: int, hour: int, minute: int = 0, fold: int = 0) -> datetime:
    """The UTC instant of a wall-clock time in ``zone``."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


@attrs.define(kw_only=True)
class ReminderWorld(MessagingWorld):
    service: ReminderService = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.service = self.services.reminders

    def add_org(self, zone: str = "America/New_York", window: SendWindow = DEFAULT_TRANSACTIONAL_WINDOW) -> None:
        self.orgs.add(Organization(ORG, "Bright Smiles", ZoneInfo(zone), "USD", transactional_window=window))

    def add_contact(
        self,
        *,
        zone: str | None = None,
        phone: str | None = "+14155550100",
        email: str | None = "ana@example.com",
        preferred: Channel = Channel.SMS,
        sms_consent: bool = True,
        email_consent: bool = True,
        contact_id: ContactId = CONTACT,
    ) -> None:
        self.contacts.add(
            Contact(
                contact_id,
                ORG,
                "Ana",
                PhoneNumber(phone) if phone else None,
                EmailAddress(email) if email else None,
                ZoneInfo(zone) if zone else None,
                preferred_channel=preferred,
                sms_consent=sms_consent,
                email_consent=email_consent,
            )
        )

    def add_appointment(
        self,
        starts_at: datetime,
        status: AppointmentStatus = AppointmentStatus.SCHEDULED,
        appointment_id: AppointmentId = APPOINTMENT,
    ) -> Appointment:
        return self.appointments.add(Appointment(appointment_id, ORG, CONTACT, starts_at, status))


def make_world(now: datetime) -> ReminderWorld:
    """Fakes sharing one clock set to ``now``; no org, contact or appointment yet."""
    return ReminderWorld(clock=FakeClock(now))
