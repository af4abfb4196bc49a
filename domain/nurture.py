"""Nurture: send one step of a drip sequence, then queue the next one (or complete the enrollment).

How a step finds its enrollment (the Node payload names no sequence). A contact's enrollment *fits* the job when
its sequence has a step numbered ``sequenceStep`` whose template is ``template``. Among the contact's ACTIVE
enrollments that fit, the job belongs to the one whose ``last_step_done`` is the step's predecessor (the step is
due) or the step itself (a replay: the step is done; the next one is queued again, idempotently, in case the run
that did it died before queueing). Exactly one may match:
- more than one -> InvalidJob("sequenceStep"): the job cannot say which (give templates unique names per sequence);
- none, and the payload never could have matched (no enrollment of the contact fits, or the enrollment is behind
  the step, which this worker never queues) -> InvalidJob("sequenceStep"): malformed by construction;
- none, but an active enrollment that fits is past the step -> Skipped("step_already_done"), and none, but an
  ended (completed or exited) enrollment fits -> Skipped("enrollment_not_active"): the state changed since enqueue.

Then, in order: a missing contact exits the enrollment (CONTACT_GONE), lost marketing consent exits it
(UNSUBSCRIBED), an appointment booked since enrolment exits it (APPOINTMENT_BOOKED). A step whose channel the
contact cannot be reached on (no address, no consent for the channel) is skipped and the sequence moves on. The
message is rendered (errors are invalid jobs), kept within the org's marketing window (else Deferred to its
opening, never dropped) and under the cap of 3 marketing messages per contact per rolling 24 hours (else Deferred
to when the cap reopens), then sent once. A message already claimed in the ledger by an earlier run passed those
gates when it was claimed: it is not gated again, only resolved (so a retry after a crash still moves on). With
``personalization`` set, a template that opts in has its copy chosen after those gates (domain.copy_personalization).

The sequence moves on (step recorded, next step queued with its delay, or the enrollment completed) after every
step that is settled for good: delivered (now or earlier), refused permanently (the ledger keeps the failure; later
steps may use another channel), or unconfirmed (it must not be sent again). An opt-out exits the enrollment; a
deferral runs the same job again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import attrs

from domain.compose import reachable_address, render_email, render_sms
from domain.copy_personalization import CopyPersonalization
from domain.delivery import Delivered, DeliveryResult, Dispatcher, Suppressed, Unconfirmed
from domain.errors import InvalidJob, SuppressionReason
from domain.jobs import NurtureJob, custom_job_id
from domain.messages import EmailMessage, SendClaim, SmsMessage
from domain.models import Contact, Enrollment, ExitReason, Organization, Sequence, SequenceStep
from domain.outcomes import Deferred, Outcome, Sent, Skipped, Undeliverable
from domain.ports import (
    Appointments,
    Clock,
    Contacts,
    JobPublisher,
    NurtureEnrollments,
    Organizations,
    SendLedger,
    TemplateRenderer,
    Templates,
)
from domain.send_windows import is_open, next_open
from domain.values import Channel, EnrollmentId, MessagePurpose, PhoneNumber

MARKETING_CAP = 3  # marketing messages per contact ...
CAP_PERIOD = timedelta(hours=24)  # ... per rolling period
# count_sent_since counts claims at or after its ``since``: one second later the oldest counted one has left.
_JUST_AFTER = timedelta(seconds=1)


def nurture_job_id(enrollment_id: EnrollmentId, step: int) -> str:
    """``nurture_<enrollmentId>_<step>``."""
    return custom_job_id("nurture", enrollment_id, str(step))


def nurture_ledger_key(enrollment_id: EnrollmentId, step: int, channel: Channel) -> str:
    return f"nurture:{enrollment_id}:{step}:{channel}"


def predecessor(sequence: Sequence, step: SequenceStep) -> int:
    """The number of the step before ``step`` in its sequence; 0 for the first step."""
    return max((s.number for s in sequence.steps if s.number < step.number), default=0)


@attrs.frozen
class _Fit:
    enrollment: Enrollment
    sequence: Sequence
    step: SequenceStep

    @property
    def is_due(self) -> bool:
        return self.enrollment.last_step_done == predecessor(self.sequence, self.step)

    @property
    def is_done(self) -> bool:
        return self.enrollment.last_step_done == self.step.number


@attrs.define
class NurtureService:
    enrollments: NurtureEnrollments
    contacts: Contacts
    organizations: Organizations
    appointments: Appointments
    templates: Templates
    renderer: TemplateRenderer
    ledger: SendLedger
    dispatcher: Dispatcher
    publisher: JobPublisher
    clock: Clock
    personalization: CopyPersonalization | None = None  # None: templates are sent as written

    async def process(self, job: NurtureJob) -> Outcome:
        """Send the enrollment's step ``job.sequence_step`` once, within the marketing window and cap, and move the
        sequence on when the step is settled for good (this module's docstring).

        Returns ``Sent``, ``Skipped`` (org gone or inactive, step already done, enrollment not active or exited on
        an opt-out, channel unreachable, unconfirmed), ``Deferred`` (the window is closed, the contact is at the
        cap, or the dispatcher deferred) or ``Undeliverable``.
        Raises InvalidJob naming the field of a malformed payload (before any look-up), TransientError when a store
        or provider is unreachable (the job's backoff applies), DeliveryOutcomeUnknown when a provider's answer was
        ambiguous (the send ledger keeps it from going out twice).
        """
        if job.sequence_step < 1:  # checked before any look-up: steps count from 1
            raise InvalidJob("sequenceStep", "must be at least 1")
        now = self.clock.now()
        org = await self.organizations.get(job.org_id)
        if org is None:
            return Skipped("org_not_found")
        if not org.active:
            return Skipped("org_inactive")
        found = await self._find(job)
        if isinstance(found, Skipped):
            return found
        if found.is_done:
            await self._advance(job, found, now)
            return Skipped("step_already_done")
        enrollment = found.enrollment
        contact = await self.contacts.get(job.org_id, job.contact_id)
        if contact is None:
            return await self._exit(enrollment, ExitReason.CONTACT_GONE, now)
        if not contact.marketing_consent:
            return await self._exit(enrollment, ExitReason.UNSUBSCRIBED, now)
        if await self.appointments.booked_since(job.org_id, job.contact_id, enrollment.enrolled_at):
            return await self._exit(enrollment, ExitReason.APPOINTMENT_BOOKED, now)
        message = await self._message(job, contact, found)
        if message is None:
            await self._advance(job, found, now)
            return Skipped("channel_unreachable")
        claimed_before = await self.ledger.get(message.ledger_key) is not None
        if not claimed_before:
            held = await self._held_until(org, contact, now)
            if held is not None:
                return held
        if self.personalization is not None:
            message = await self._personalized(self.personalization, job, org, message, claimed_before)
        result = await self.dispatcher.deliver(self._claim(job, found, message), message)
        return await self._settle(job, found, result, now)

    async def _find(self, job: NurtureJob) -> _Fit | Skipped:
        """The contact's enrollment this step belongs to, by the rule in the module docstring."""
        active = await self._fits(job, await self.enrollments.active_for_contact(job.org_id, job.contact_id))
        matches = [f for f in active if f.is_due or f.is_done]
        if len(matches) > 1:
            raise InvalidJob("sequenceStep", "matches more than one active enrollment")
        if matches:
            return matches[0]
        if any(f.enrollment.last_step_done > f.step.number for f in active):
            return Skipped("step_already_done")
        if await self._fits(job, await self.enrollments.ended_for_contact(job.org_id, job.contact_id)):
            return Skipped("enrollment_not_active")
        raise InvalidJob("sequenceStep", "matches no active enrollment of the contact")

    async def _fits(self, job: NurtureJob, enrollments: Iterable[Enrollment]) -> list[_Fit]:
        fits = []
        for enrollment in enrollments:
            sequence = await self.enrollments.sequence(job.org_id, enrollment.sequence_id)
            step = sequence.step(job.sequence_step) if sequence is not None else None
            if sequence is not None and step is not None and step.template == job.template:
                fits.append(_Fit(enrollment, sequence, step))
        return fits

    async def _exit(self, enrollment: Enrollment, reason: ExitReason, now: datetime) -> Skipped:
        await self.enrollments.exit(enrollment.id, reason, now)
        return Skipped(str(reason))

    async def _message(self, job: NurtureJob, contact: Contact, fit: _Fit) -> SmsMessage | EmailMessage | None:
        """The rendered message for the step's channel; None when the contact cannot be reached on it."""
        channel = fit.step.channel
        address = reachable_address(contact, channel)
        if address is None:
            return None
        template = await self.templates.get(job.org_id, job.template, channel)
        if template is None:
            raise InvalidJob("template", "names no template of the org for this channel")
        key = nurture_ledger_key(fit.enrollment.id, fit.step.number, channel)
        if isinstance(address, PhoneNumber):
            return SmsMessage(key, address, render_sms(self.renderer, template, job.personalization))
        email = render_email(self.renderer, template, job.personalization)
        return EmailMessage(key, address, email.subject, email.text, email.html)

    async def _personalized(
        self,
        personalization: CopyPersonalization,
        job: NurtureJob,
        org: Organization,
        message: SmsMessage | EmailMessage,
        claimed_before: bool,
    ) -> SmsMessage | EmailMessage:
        """The words to send for an opted-in template (domain.copy_personalization); ``message`` otherwise."""
        channel = Channel.SMS if isinstance(message, SmsMessage) else Channel.EMAIL
        template = await self.templates.get(job.org_id, job.template, channel)
        if template is None:  # deleted since the message was rendered: send what was rendered
            return message
        return await personalization.copy_for(
            org, template, message, job.personalization, claimed_before=claimed_before
        )

    async def _held_until(self, org: Organization, contact: Contact, now: datetime) -> Deferred | None:
        """Deferred while the marketing window is closed or the contact is at the cap; None when it may go now."""
        zone: ZoneInfo = contact.zone or org.zone
        if not is_open(org.marketing_window, now, zone):
            return Deferred(next_open(org.marketing_window, now, zone), "outside_send_window")
        since = now - CAP_PERIOD
        purpose = MessagePurpose.MARKETING
        if await self.ledger.count_sent_since(org.id, contact.id, purpose, since) < MARKETING_CAP:
            return None
        claimed = await self.ledger.claim_times_since(org.id, contact.id, purpose, since)
        if len(claimed) < MARKETING_CAP:  # some were released between the two reads: under the cap now
            return None
        reopens = claimed[-MARKETING_CAP] + CAP_PERIOD + _JUST_AFTER
        return Deferred(next_open(org.marketing_window, reopens, zone), "marketing_cap")

    def _claim(self, job: NurtureJob, fit: _Fit, message: SmsMessage | EmailMessage) -> SendClaim:
        return SendClaim(
            message.ledger_key, job.org_id, job.contact_id, fit.step.channel, MessagePurpose.MARKETING, message.to
        )

    async def _settle(self, job: NurtureJob, fit: _Fit, result: DeliveryResult, now: datetime) -> Outcome:
        """Map the dispatcher's answer to an outcome, moving the sequence on when the step is settled for good."""
        if isinstance(result, Deferred):
            return result
        opted_out = SuppressionReason.OPTED_OUT
        if isinstance(result, Suppressed) and result.reason is opted_out:
            return await self._exit(fit.enrollment, ExitReason.UNSUBSCRIBED, now)
        if isinstance(result, Undeliverable) and result.suppressed is opted_out:
            return await self._exit(fit.enrollment, ExitReason.UNSUBSCRIBED, now)
        await self._advance(job, fit, now)
        if isinstance(result, Delivered):
            return Sent((fit.step.channel,))
        if isinstance(result, Unconfirmed):
            return Skipped("delivery_unconfirmed")
        if isinstance(result, Suppressed):
            return Undeliverable(f"suppressed_{result.reason}")
        return Undeliverable(result.reason, result.code)

    async def _advance(self, job: NurtureJob, fit: _Fit, now: datetime) -> None:
        """Record the step, then queue the next one after its delay, or complete the enrollment after the last."""
        await self.enrollments.record_step(fit.enrollment.id, fit.step.number, now)
        following = fit.sequence.next_step(fit.step.number)
        if following is None:
            await self.enrollments.complete(fit.enrollment.id, now)
            return
        next_job = NurtureJob(job.org_id, job.contact_id, following.number, following.template, job.personalization)
        await self.publisher.publish(
            next_job, nurture_job_id(fit.enrollment.id, following.number), run_at=now + following.delay
        )
