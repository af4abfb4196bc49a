"""Appointment reminders: the hourly scan that queues them and the processing that sends each one once.

Processing re-checks everything at send time (the job may have waited a day): a cancelled, moved or past
appointment is skipped with a reason, not an error. Channel rule: the contact's preferred channel when it has
an address and consent, else the other one; an address that turns out suppressed (opted out) falls back to the
other channel when that one is allowed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import attrs

from domain.compose import one_line
from domain.delivery import Delivered, Dispatcher, Suppressed
from domain.errors import InvalidJob, InvalidValue, SuppressionReason
from domain.jobs import AppointmentScanJob, ReminderJob, ReminderKind
from domain.messages import EmailMessage, SendClaim, SmsMessage
from domain.models import Appointment, AppointmentStatus, Contact, Organization, ReminderCandidate, Template
from domain.outcomes import Deferred, Outcome, Published, Sent, Skipped, Undeliverable
from domain.ports import Appointments, Clock, Contacts, JobPublisher, Organizations, TemplateRenderer, Templates
from domain.reminder_scan import (
    DEFAULT_EMAIL_SUBJECT,
    DEFAULT_REMINDER_TEXT,
    LONGEST_LEAD,
    SCAN_INTERVAL,
    SCAN_MARGIN,
    plan_reminders,
    reminder_job_id,
    reminder_ledger_key,
    reminder_template_name,
    reminder_variables,
)
from domain.send_windows import is_open, nearest_open
from domain.sms import sms_body_problem
from domain.values import Channel, MessagePurpose, OrgId

# Job times travel as JavaScript dates (milliseconds); a stored start with microseconds is still the same start.
_SAME_INSTANT = timedelta(milliseconds=1)


def reachable_channels(contact: Contact) -> tuple[Channel, ...]:
    """The channels the contact may get a reminder on, the preferred one first."""
    allowed = {
        Channel.SMS: contact.phone is not None and contact.sms_consent,
        Channel.EMAIL: contact.email is not None and contact.email_consent,
    }
    order = sorted(Channel, key=lambda c: c is not contact.preferred_channel)
    return tuple(c for c in order if allowed[c])


def _stale_reason(appointment: Appointment | None, job: ReminderJob, now: datetime) -> str | None:
    """Why the reminder must not go out any more, or None when the appointment still stands as queued."""
    if appointment is None:
        return "appointment_not_found"
    if appointment.status is AppointmentStatus.CANCELLED:
        return "appointment_cancelled"
    if not appointment.status.is_upcoming or appointment.starts_at <= now:
        return "appointment_passed"
    if abs(appointment.starts_at - job.scheduled_for) >= _SAME_INSTANT:
        return "appointment_moved"
    if appointment.contact_id != job.contact_id:
        return "appointment_contact_changed"
    return None


@attrs.define
class ReminderService:
    appointments: Appointments
    contacts: Contacts
    organizations: Organizations
    templates: Templates
    renderer: TemplateRenderer
    publisher: JobPublisher
    dispatcher: Dispatcher
    clock: Clock

    async def scan(self, job: AppointmentScanJob) -> Published:
        """Queue every reminder that may go out before the next scan (or is overdue and still worth sending),
        one job per (appointment, kind, start time), delayed to the instant it may go out."""
        now = self.clock.now()
        horizon = now + SCAN_INTERVAL + SCAN_MARGIN
        orgs: dict[OrgId, Organization | None] = {}
        templates: dict[tuple[OrgId, ReminderKind], Template | None] = {}  # one look-up per org and kind a scan
        published = already_queued = 0
        for candidate in await self.appointments.upcoming_between(now, horizon + LONGEST_LEAD):
            appointment = candidate.appointment
            if appointment.org_id not in orgs:
                orgs[appointment.org_id] = await self.organizations.get(appointment.org_id)
            org = orgs[appointment.org_id]
            if org is None:
                continue
            for reminder in plan_reminders(appointment.starts_at, candidate.zone, org.transactional_window, now):
                if reminder.send_at > horizon:
                    continue
                template_key = (appointment.org_id, reminder.kind)
                if template_key not in templates:
                    templates[template_key] = await self.templates.get(
                        appointment.org_id, reminder_template_name(reminder.kind), Channel.SMS
                    )
                reminder_job = ReminderJob(
                    org_id=appointment.org_id,
                    contact_id=appointment.contact_id,
                    appointment_id=appointment.id,
                    message=self._render_text(candidate, templates[template_key]),
                    scheduled_for=appointment.starts_at,
                    reminder_type=reminder.kind,
                )
                job_id = reminder_job_id(appointment.id, reminder.kind, appointment.starts_at)
                if await self.publisher.publish(reminder_job, job_id, reminder.send_at):
                    published += 1
                else:
                    already_queued += 1
        return Published(published, already_queued)

    def _render_text(self, candidate: ReminderCandidate, template: Template | None) -> str:
        """The org's SMS reminder template rendered for this appointment; the built-in text when the org has none
        or its template cannot be rendered (a broken template must not cost the contact the reminder)."""
        appointment = candidate.appointment
        variables = reminder_variables(
            candidate.contact_first_name, candidate.org_name, appointment.starts_at, candidate.zone
        )
        if template is not None:
            try:
                return self.renderer.render(template.body, variables, html=False)
            except (InvalidJob, InvalidValue):
                pass
        return self.renderer.render(DEFAULT_REMINDER_TEXT, variables, html=False)

    async def process(self, job: ReminderJob) -> Outcome:
        """Send the job's message once, if the appointment still stands, on a channel the contact allows, within
        the transactional send window. The payload is checked before any look-up: an empty ``message`` or one over
        the SMS body limit (1,600 characters, domain/sms.py) is an invalid job.

        Returns ``Sent`` (the channel that carried it), ``Skipped`` (cancelled, past, no consent, unconfirmed...),
        ``Deferred`` (the send window is closed, or the dispatcher deferred) or ``Undeliverable``.
        Raises InvalidJob naming the field of a malformed payload (before any look-up), TransientError when a store
        or provider is unreachable (the job's backoff applies), DeliveryOutcomeUnknown when a provider's answer was
        ambiguous (the send ledger keeps it from going out twice).
        """
        if not job.message.strip():
            raise InvalidJob("message", "is empty")
        too_long = sms_body_problem(job.message)  # the message is the SMS text, whichever channel carries it
        if too_long is not None:
            raise InvalidJob("message", too_long)
        now = self.clock.now()
        appointment = await self.appointments.get(job.org_id, job.appointment_id)
        stale = _stale_reason(appointment, job, now)
        if stale is not None:
            return Skipped(stale)
        assert appointment is not None
        org = await self.organizations.get(job.org_id)
        if org is None:
            return Skipped("org_not_found")
        if not org.active:
            return Skipped("org_inactive")
        contact = await self.contacts.get(job.org_id, job.contact_id)
        if contact is None:
            return Skipped("contact_not_found")
        channels = reachable_channels(contact)
        if not channels:
            return Undeliverable("no_reachable_channel")
        zone = contact.zone or org.zone
        window = org.transactional_window
        if job.reminder_type is ReminderKind.DAY_BEFORE and not any(
            p.kind is ReminderKind.DAY_BEFORE for p in plan_reminders(appointment.starts_at, zone, window, now)
        ):
            return Skipped("superseded_by_3h_reminder")  # delayed jobs released together after downtime
        if not is_open(window, now, zone):
            later = nearest_open(window, now, zone, not_before=now, before=appointment.starts_at)
            return Skipped("send_window_closed") if later is None else Deferred(later, "send_window_closed")
        return await self._send(job, org, contact, zone, channels)

    async def _send(
        self, job: ReminderJob, org: Organization, contact: Contact, zone: ZoneInfo, channels: tuple[Channel, ...]
    ) -> Outcome:
        """Try the channels in order; move on only when the address proved unusable (suppressed, opted out)."""
        outcome: Outcome = Undeliverable("no_reachable_channel")
        for channel in channels:
            key = reminder_ledger_key(job.appointment_id, job.reminder_type, job.scheduled_for, channel)
            message = await self._message(key, channel, job, org, contact, zone)
            claim = SendClaim(key, job.org_id, job.contact_id, channel, MessagePurpose.TRANSACTIONAL, message.to)
            result = await self.dispatcher.deliver(claim, message)
            if isinstance(result, Delivered):
                return Sent((channel,))
            if isinstance(result, Deferred):
                return result
            if isinstance(result, Suppressed):
                withdrawn = result.reason is SuppressionReason.OPTED_OUT  # a STOP: the contact's consent is gone
                outcome = Skipped("consent" if withdrawn else "recipient_suppressed")
            elif isinstance(result, Undeliverable):
                outcome = Undeliverable(result.reason, result.code)
                if result.suppressed is None:
                    return outcome
            else:
                return Skipped("delivery_unconfirmed")
        return outcome

    async def _message(
        self, key: str, channel: Channel, job: ReminderJob, org: Organization, contact: Contact, zone: ZoneInfo
    ) -> SmsMessage | EmailMessage:
        if channel is Channel.SMS:
            assert contact.phone is not None
            return SmsMessage(key, contact.phone, job.message)
        assert contact.email is not None
        template = await self.templates.get(job.org_id, reminder_template_name(job.reminder_type), Channel.EMAIL)
        variables = reminder_variables(contact.first_name, org.name, job.scheduled_for, zone)
        return EmailMessage(
            key,
            contact.email,
            subject=self._subject(template, variables),
            text=job.message,
            html="<p>" + html.escape(job.message).replace("\n", "<br>\n") + "</p>",
        )

    def _subject(self, template: Template | None, variables: Mapping[str, str]) -> str:
        """The org's email subject for this reminder on one line, else the built-in one."""
        if template is None or not template.subject:
            return DEFAULT_EMAIL_SUBJECT
        try:
            subject = self.renderer.render(template.subject, variables, html=False)
        except (InvalidJob, InvalidValue):
            return DEFAULT_EMAIL_SUBJECT
        return one_line(subject) or DEFAULT_EMAIL_SUBJECT
