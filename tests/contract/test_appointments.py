"""Appointments contract: lookup, the reminder scan's window and filters, and the nurture exit rule."""

from __future__ import annotations

from datetime import timedelta

from domain.models import AppointmentStatus
from domain.values import AppointmentId, ContactId, OrgId, zone
from tests.support.backends import Backend
from tests.support.builders import T0, appointment, contact, org


async def _clinic(backend: Backend) -> None:
    await backend.seed.org(org("org-1", zone_name="America/New_York"))
    await backend.seed.contact(contact("c-1", zone_name="Europe/Paris"))
    await backend.seed.contact(contact("c-2", zone_name=None))


async def test_get_returns_the_appointment_as_it_is(backend: Backend) -> None:
    """get() returns the stored appointment; another org's id or an unknown id gives None."""
    await _clinic(backend)
    stored = await backend.seed.appointment(appointment("a-1", T0, status=AppointmentStatus.CONFIRMED))
    assert await backend.appointments.get(OrgId("org-1"), AppointmentId("a-1")) == stored
    assert await backend.appointments.get(OrgId("org-2"), AppointmentId("a-1")) is None
    assert await backend.appointments.get(OrgId("org-1"), AppointmentId("a-2")) is None


async def test_upcoming_between_takes_the_half_open_window_in_start_order(backend: Backend) -> None:
    """start <= starts_at < end, scheduled and confirmed only, ordered by start time."""
    await _clinic(backend)
    end = T0 + timedelta(hours=1)
    await backend.seed.appointment(appointment("late", T0 + timedelta(minutes=59)))
    await backend.seed.appointment(appointment("at-start", T0, status=AppointmentStatus.CONFIRMED))
    await backend.seed.appointment(appointment("at-end", end))
    await backend.seed.appointment(appointment("before", T0 - timedelta(seconds=1)))
    for status in (AppointmentStatus.CANCELLED, AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW):
        await backend.seed.appointment(appointment(f"s-{status}", T0 + timedelta(minutes=5), status=status))
    found = await backend.appointments.upcoming_between(T0, end)
    assert [c.appointment.id for c in found] == ["at-start", "late"]
    assert found[0].appointment.status is AppointmentStatus.CONFIRMED


async def test_upcoming_candidates_carry_zone_and_names(backend: Backend) -> None:
    """The contact's zone wins, the org's applies when the contact has none; first and org names come along."""
    await _clinic(backend)
    await backend.seed.appointment(appointment("a-1", T0, contact_id="c-1"))
    await backend.seed.appointment(appointment("a-2", T0 + timedelta(minutes=1), contact_id="c-2"))
    first, second = await backend.appointments.upcoming_between(T0, T0 + timedelta(hours=1))
    assert (first.zone, first.contact_first_name, first.org_name) == (zone("Europe/Paris"), "Ada", "Clinic org-1")
    assert second.zone == zone("America/New_York")


async def test_upcoming_skips_inactive_orgs(backend: Backend) -> None:
    """Appointments of an inactive org are not reminded."""
    await backend.seed.org(org("org-off", active=False))
    await backend.seed.contact(contact("c-1", "org-off"))
    await backend.seed.appointment(appointment("a-1", T0, org_id="org-off"))
    assert await backend.appointments.upcoming_between(T0, T0 + timedelta(hours=1)) == []


async def test_booked_since_counts_new_appointments_that_are_not_cancelled(backend: Backend) -> None:
    """Created at or after ``since`` and not cancelled: True; cancelled or older ones: False."""
    await _clinic(backend)
    await backend.seed.appointment(appointment("old", T0), created_at=T0 - timedelta(days=1))
    await backend.seed.appointment(
        appointment("cancelled", T0, status=AppointmentStatus.CANCELLED), created_at=T0 + timedelta(hours=1)
    )
    c1, c2 = ContactId("c-1"), ContactId("c-2")
    assert await backend.appointments.booked_since(OrgId("org-1"), c1, T0) is False
    await backend.seed.appointment(appointment("new", T0, contact_id="c-2"), created_at=T0)
    assert await backend.appointments.booked_since(OrgId("org-1"), c2, T0) is True
    assert await backend.appointments.booked_since(OrgId("org-1"), c2, T0 + timedelta(microseconds=1)) is False
