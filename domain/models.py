"""What the domain reads from the CRM and writes of its own, as frozen values that repositories return.

Times are aware UTC datetimes; zones are IANA ``ZoneInfo``; money is ``Money``. Names and contact details are
kept out of ``repr``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs

from domain.values import (
    AppointmentId,
    Channel,
    ContactId,
    EmailAddress,
    EnrollmentId,
    Money,
    OrgId,
    PhoneNumber,
    SequenceId,
)


@attrs.frozen
class SendWindow:
    """Local wall-clock hours in which messages may go out: ``start`` inclusive, ``end`` exclusive."""

    start: time
    end: time


DEFAULT_TRANSACTIONAL_WINDOW = SendWindow(time(7, 0), time(21, 0))
DEFAULT_MARKETING_WINDOW = SendWindow(time(8, 0), time(20, 0))


class DunningTone(enum.StrEnum):
    FRIENDLY = "friendly"
    FIRM = "firm"
    URGENT = "urgent"
    FINAL = "final"


@attrs.frozen
class DunningStage:
    """From ``min_days_overdue`` on (until the next stage), send these channels in this tone."""

    min_days_overdue: int
    tone: DunningTone
    channels: frozenset[Channel]


DEFAULT_DUNNING_POLICY: tuple[DunningStage, ...] = (
    DunningStage(1, DunningTone.FRIENDLY, frozenset({Channel.EMAIL})),
    DunningStage(7, DunningTone.FIRM, frozenset({Channel.EMAIL, Channel.SMS})),
    DunningStage(14, DunningTone.URGENT, frozenset({Channel.EMAIL, Channel.SMS})),
    DunningStage(30, DunningTone.FINAL, frozenset({Channel.EMAIL, Channel.SMS})),
)


@attrs.frozen
class Organization:
    id: OrgId
    name: str = attrs.field(repr=False)
    zone: ZoneInfo
    currency: str
    active: bool = True
    transactional_window: SendWindow = DEFAULT_TRANSACTIONAL_WINDOW
    marketing_window: SendWindow = DEFAULT_MARKETING_WINDOW
    dunning_policy: tuple[DunningStage, ...] = DEFAULT_DUNNING_POLICY


@attrs.frozen
class Contact:
    """``zone`` is None when the CRM does not know it; the org's zone applies then."""

    id: ContactId
    org_id: OrgId
    first_name: str = attrs.field(repr=False)
    phone: PhoneNumber | None
    email: EmailAddress | None
    zone: ZoneInfo | None
    preferred_channel: Channel = Channel.SMS
    sms_consent: bool = True
    email_consent: bool = True
    marketing_consent: bool = False
    created_at: datetime | None = None


class AppointmentStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"

    @property
    def is_upcoming(self) -> bool:
        return self in (AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED)


@attrs.frozen
class Appointment:
    id: AppointmentId
    org_id: OrgId
    contact_id: ContactId
    starts_at: datetime
    status: AppointmentStatus


@attrs.frozen
class ReminderCandidate:
    """An upcoming appointment as the scan sees it, with what rendering its reminder needs."""

    appointment: Appointment
    zone: ZoneInfo  # the contact's zone, else the org's
    contact_first_name: str = attrs.field(repr=False)
    org_name: str = attrs.field(repr=False)


@attrs.frozen
class Template:
    """``ai_instruction`` opts the template in to AI personalization (the org's words to the model); the answer
    must keep every literal of ``ai_required_literals`` (opt-out text ...) verbatim. See domain.copy_guard."""

    org_id: OrgId
    name: str
    channel: Channel
    body: str = attrs.field(repr=False)
    subject: str | None = attrs.field(default=None, repr=False)
    ai_instruction: str | None = attrs.field(default=None, repr=False)
    ai_required_literals: tuple[str, ...] = attrs.field(default=(), repr=False)


@attrs.frozen
class SequenceStep:
    """Step ``number`` counts from 1; ``delay`` is the wait after the previous step (after enrolment for step 1)."""

    number: int
    channel: Channel
    template: str
    delay: timedelta


@attrs.frozen
class Sequence:
    id: SequenceId
    org_id: OrgId
    steps: tuple[SequenceStep, ...]

    def step(self, number: int) -> SequenceStep | None:
        return next((s for s in self.steps if s.number == number), None)

    def next_step(self, number: int) -> SequenceStep | None:
        later = [s for s in self.steps if s.number > number]
        return min(later, key=lambda s: s.number) if later else None


class EnrollmentStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


class ExitReason(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    APPOINTMENT_BOOKED = "appointment_booked"
    CONTACT_GONE = "contact_gone"


@attrs.frozen
class Enrollment:
    """``last_step_done`` is 0 before the first step is sent."""

    id: EnrollmentId
    org_id: OrgId
    contact_id: ContactId
    sequence_id: SequenceId
    status: EnrollmentStatus
    last_step_done: int
    enrolled_at: datetime
    exit_reason: ExitReason | None = None


class DeliveryStatus(enum.StrEnum):
    """A KPI message count's outcome: sent (the provider took it), delivered (reported delivered), failed (refused,
    given up, or reported undelivered/failed)."""

    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


@attrs.frozen
class KpiFacts:
    """Raw counts and sums for one org over one local day, as the KPI facts port computes them."""

    appointments_booked: int
    appointments_completed: int
    appointments_cancelled: int
    appointments_no_show: int
    new_contacts: int
    revenue_collected: Money
    outstanding_receivables: Money
    messages: Mapping[tuple[Channel, DeliveryStatus], int]
    enrollments_started: int
    enrollments_completed: int
    dunning_recovered: Money


@attrs.frozen
class DailySnapshot:
    """One org's KPIs for one local calendar day. ``show_rate`` is None when no appointment was due."""

    org_id: OrgId
    date: date
    facts: KpiFacts
    show_rate: float | None
    computed_at: datetime
