"""Nurture steps through their ports: enrollment finding, exits, rendering, window, cap, sending once, moving on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from domain.errors import DeliveryRateLimited, DeliveryRejected, InvalidJob, SuppressionReason
from domain.jobs import NurtureJob
from domain.messages import SendClaim
from domain.models import (
    Appointment,
    AppointmentStatus,
    Contact,
    Enrollment,
    EnrollmentStatus,
    ExitReason,
    Organization,
    Sequence,
    SequenceStep,
    Template,
)
from domain.nurture import NurtureService, nurture_job_id, nurture_ledger_key
from domain.outcomes import Deferred, Sent, Skipped, Undeliverable
from domain.values import (
    AppointmentId,
    Channel,
    EmailAddress,
    EnrollmentId,
    MessagePurpose,
    PhoneNumber,
    SequenceId,
    zone,
)
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.jobs import PublishedJob
from tests.support.worlds import CONTACT, ORG, MessagingWorld

ENROLLMENT = EnrollmentId("enr-1")
SEQUENCE = SequenceId("seq-1")
# 10:00 in Los Angeles (the contact's zone), inside the 08:00-20:00 marketing window
NOW = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
ENROLLED_AT = NOW - timedelta(days=1)
STEPS = (
    SequenceStep(1, Channel.EMAIL, "welcome", timedelta(0)),
    SequenceStep(2, Channel.SMS, "tips", timedelta(days=2)),
    SequenceStep(3, Channel.EMAIL, "offer", timedelta(days=3)),
)
PERSONALIZATION = {"first_name": "Dana", "tip": "floss daily"}


@attrs.define(kw_only=True)
class World(MessagingWorld):
    service: NurtureService = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.service = self.services.nurture

    def enroll(
        self, enrollment_id: str = ENROLLMENT, sequence_id: str = SEQUENCE, last_step_done: int = 0, **changes: Any
    ) -> Enrollment:
        enrollment = Enrollment(
            EnrollmentId(enrollment_id),
            ORG,
            CONTACT,
            SequenceId(sequence_id),
            EnrollmentStatus.ACTIVE,
            last_step_done,
            ENROLLED_AT,
        )
        return self.enrollments.add(attrs.evolve(enrollment, **changes))

    def enrollment(self, enrollment_id: str = ENROLLMENT) -> Enrollment:
        return self.enrollments.enrollments[EnrollmentId(enrollment_id)]


def job(step: int = 1, template: str = "welcome", **personalization: Any) -> NurtureJob:
    return NurtureJob(ORG, CONTACT, step, template, {**PERSONALIZATION, **personalization})


@pytest.fixture
def world() -> World:
    w = World(clock=FakeClock(NOW))
    w.orgs.add(Organization(ORG, "Acme Dental", zone("America/New_York"), "USD"))
    w.contacts.add(
        Contact(
            CONTACT,
            ORG,
            "Dana",
            PhoneNumber("+14155550100"),
            EmailAddress("dana@example.com"),
            zone("America/Los_Angeles"),
            marketing_consent=True,
        )
    )
    w.enrollments.add_sequence(Sequence(SEQUENCE, ORG, STEPS))
    w.templates.add(
        Template(ORG, "welcome", Channel.EMAIL, "<p>Hello {{ first_name }}</p>", "Welcome {{ first_name }}")
    )
    w.templates.add(Template(ORG, "tips", Channel.SMS, "Hi {{ first_name }}, tip: {{ tip }}"))
    w.templates.add(Template(ORG, "offer", Channel.EMAIL, "<p>An offer for {{ first_name }}</p>", "Your offer"))
    w.enroll()
    return w


async def test_due_step_is_sent_then_next_step_published_with_its_delay_and_deterministic_id(world: World) -> None:
    """A due step goes out once, is recorded, and queues the next step after its delay under a fixed id."""
    outcome = await world.service.process(job())

    assert outcome == Sent((Channel.EMAIL,))
    assert [m.to.address for m in world.email.sent] == ["dana@example.com"]
    assert world.enrollment().last_step_done == 1
    assert world.publisher.published == [
        PublishedJob(job(2, "tips"), "nurture_enr-1_2", NOW + timedelta(days=2)),
    ]


def test_job_id_has_no_colon() -> None:
    """An enrollment id with ':' still gives a BullMQ-safe job id, and distinct ids stay distinct."""
    assert nurture_job_id(EnrollmentId("a:b"), 2) == "nurture_a%3Ab_2"
    assert nurture_job_id(EnrollmentId("a%3Ab"), 2) != nurture_job_id(EnrollmentId("a:b"), 2)


async def test_last_step_completes_the_enrollment(world: World) -> None:
    """After the last step is sent the enrollment is completed and nothing more is queued."""
    world.enroll(last_step_done=2)

    outcome = await world.service.process(job(3, "offer"))

    assert outcome == Sent((Channel.EMAIL,))
    assert world.enrollment().status is EnrollmentStatus.COMPLETED
    assert world.publisher.published == []


async def test_replayed_step_is_not_sent_twice(world: World) -> None:
    """Running the same step job twice sends one message and queues the next step once."""
    await world.service.process(job())
    outcome = await world.service.process(job())

    assert outcome == Skipped("step_already_done")
    assert len(world.email.sent) == 1
    assert len(world.publisher.published) == 1


async def test_replay_after_a_crash_before_queueing_queues_the_next_step(world: World) -> None:
    """A step recorded as done whose next step was never queued gets it queued by the replay, without a send."""
    world.enroll(last_step_done=1)

    outcome = await world.service.process(job())

    assert outcome == Skipped("step_already_done")
    assert world.email.sent == []
    assert [p.job_id for p in world.publisher.published] == ["nurture_enr-1_2"]


async def test_retry_after_a_crash_between_send_and_record_moves_on_without_resending(world: World) -> None:
    """A message the ledger holds as sent is not sent again, and the step is recorded and the next one queued."""
    key = nurture_ledger_key(ENROLLMENT, 1, Channel.EMAIL)
    claim = SendClaim(key, ORG, CONTACT, Channel.EMAIL, MessagePurpose.MARKETING, EmailAddress("dana@example.com"))
    claimed = await world.ledger.claim(claim, NOW - timedelta(minutes=5))
    assert claimed.entry is not None
    await world.ledger.mark_sent(key, claimed.entry.version, "sg-earlier", NOW - timedelta(minutes=5))

    outcome = await world.service.process(job())

    assert outcome == Sent((Channel.EMAIL,))
    assert world.email.sent == []
    assert world.enrollment().last_step_done == 1
    assert [p.job_id for p in world.publisher.published] == ["nurture_enr-1_2"]


async def test_a_retry_at_the_cap_is_not_held_back_by_its_own_earlier_send(world: World) -> None:
    """A step already sent by a crashed run moves on even when that very send fills the contact's cap."""
    await _marketing_claims(world, timedelta(hours=3), timedelta(hours=2))
    key = nurture_ledger_key(ENROLLMENT, 1, Channel.EMAIL)
    claim = SendClaim(key, ORG, CONTACT, Channel.EMAIL, MessagePurpose.MARKETING, EmailAddress("dana@example.com"))
    claimed = await world.ledger.claim(claim, NOW - timedelta(minutes=5))
    assert claimed.entry is not None
    await world.ledger.mark_sent(key, claimed.entry.version, "sg-earlier", NOW - timedelta(minutes=5))

    assert await world.service.process(job()) == Sent((Channel.EMAIL,))
    assert [p.job_id for p in world.publisher.published] == ["nurture_enr-1_2"]


async def test_two_active_enrollments_at_the_step_are_ambiguous(world: World) -> None:
    """Two active enrollments both due for a step of that number and template make the job invalid."""
    world.enrollments.add_sequence(Sequence(SequenceId("seq-2"), ORG, STEPS))
    world.enroll("enr-2", "seq-2")

    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job())

    assert (raised.value.field, raised.value.problem) == ("sequenceStep", "matches more than one active enrollment")
    assert world.email.sent == []


async def test_an_enrollment_past_the_step_does_not_make_it_ambiguous(world: World) -> None:
    """Another active enrollment that did that step long ago does not compete with the one it is due for."""
    world.enrollments.add_sequence(Sequence(SequenceId("seq-0"), ORG, STEPS))
    world.enroll("enr-0", "seq-0", last_step_done=3)

    outcome = await world.service.process(job())

    assert outcome == Sent((Channel.EMAIL,))
    assert world.enrollment().last_step_done == 1
    assert world.enrollment("enr-0").last_step_done == 3


@pytest.mark.parametrize(
    ("step", "template", "last_step_done"),
    [
        (1, "not-in-sequence", 0),  # template differs from the step's
        (9, "welcome", 0),  # no such step
        (3, "offer", 0),  # the enrollment is behind: step 3 is not due before step 2
    ],
)
async def test_a_step_matching_no_enrollment_is_invalid(
    world: World, step: int, template: str, last_step_done: int
) -> None:
    """A step that fits no enrollment of the contact, or one the enrollment is not at, is an invalid job."""
    world.enroll(last_step_done=last_step_done)

    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job(step, template))

    assert (raised.value.field, raised.value.problem) == (
        "sequenceStep",
        "matches no active enrollment of the contact",
    )


@pytest.mark.parametrize("step", [0, -1])
async def test_a_step_below_one_is_invalid_before_any_look_up(world: World, step: int) -> None:
    """Steps count from 1: a lower step fails as invalid even for an org that does not exist."""
    world.orgs.orgs.clear()
    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job(step=step))
    assert (raised.value.field, raised.value.problem) == ("sequenceStep", "must be at least 1")


async def test_a_contact_without_enrollments_gets_an_invalid_job(world: World) -> None:
    """A contact enrolled nowhere cannot have a nurture step: the job is invalid."""
    world.enrollments.enrollments.clear()

    with pytest.raises(InvalidJob, match="sequenceStep"):
        await world.service.process(job())


@pytest.mark.parametrize("status", [EnrollmentStatus.EXITED, EnrollmentStatus.COMPLETED])
async def test_a_step_of_an_ended_enrollment_is_skipped(world: World, status: EnrollmentStatus) -> None:
    """A step whose enrollment exited or completed since it was queued is skipped, not an error."""
    world.enroll(status=status)

    outcome = await world.service.process(job())

    assert outcome == Skipped("enrollment_not_active")
    assert world.email.sent == []
    assert world.publisher.published == []


async def test_a_late_duplicate_of_a_long_done_step_is_skipped(world: World) -> None:
    """A step job arriving after its enrollment went past it is skipped and queues nothing."""
    world.enroll(last_step_done=2)

    outcome = await world.service.process(job())

    assert outcome == Skipped("step_already_done")
    assert world.publisher.published == []


async def test_a_missing_contact_exits_the_enrollment(world: World) -> None:
    """A contact deleted since enrolment ends the enrollment as contact_gone."""
    world.contacts.contacts.clear()

    outcome = await world.service.process(job())

    assert outcome == Skipped("contact_gone")
    assert world.enrollment().status is EnrollmentStatus.EXITED
    assert world.enrollment().exit_reason is ExitReason.CONTACT_GONE


async def test_lost_marketing_consent_exits_the_enrollment(world: World) -> None:
    """A contact who withdrew marketing consent is unsubscribed from the sequence and gets nothing."""
    world.change_contact(marketing_consent=False)

    outcome = await world.service.process(job())

    assert outcome == Skipped("unsubscribed")
    assert world.enrollment().exit_reason is ExitReason.UNSUBSCRIBED
    assert world.email.sent == []
    assert world.publisher.published == []


async def test_an_appointment_booked_since_enrolment_exits_the_enrollment(world: World) -> None:
    """Booking an appointment after enrolling ends the nurture sequence: its goal is reached."""
    appointment = Appointment(AppointmentId("a-1"), ORG, CONTACT, NOW + timedelta(days=3), AppointmentStatus.SCHEDULED)
    world.appointments.add(appointment, created_at=ENROLLED_AT + timedelta(hours=1))

    outcome = await world.service.process(job())

    assert outcome == Skipped("appointment_booked")
    assert world.enrollment().exit_reason is ExitReason.APPOINTMENT_BOOKED
    assert world.email.sent == []


async def test_an_appointment_booked_before_enrolment_does_not_exit(world: World) -> None:
    """Only appointments booked since enrolment end the sequence."""
    appointment = Appointment(AppointmentId("a-1"), ORG, CONTACT, NOW + timedelta(days=3), AppointmentStatus.SCHEDULED)
    world.appointments.add(appointment, created_at=ENROLLED_AT - timedelta(hours=1))

    assert await world.service.process(job()) == Sent((Channel.EMAIL,))


async def test_a_provider_opt_out_exits_the_enrollment(world: World) -> None:
    """An SMS refused because the number opted out unsubscribes the enrollment and queues nothing."""
    world.enroll(last_step_done=1)
    world.sms.fail_with.append(DeliveryRejected("recipient opted out", "21610", SuppressionReason.OPTED_OUT))

    outcome = await world.service.process(job(2, "tips"))

    assert outcome == Skipped("unsubscribed")
    assert world.enrollment().exit_reason is ExitReason.UNSUBSCRIBED
    assert world.publisher.published == []


async def test_an_opted_out_address_exits_the_enrollment_without_a_send(world: World) -> None:
    """A recipient already suppressed as opted out is unsubscribed from the sequence, nothing is sent."""
    world.enroll(last_step_done=1)
    await world.ledger.suppress(ORG, Channel.SMS, PhoneNumber("+14155550100"), SuppressionReason.OPTED_OUT, NOW)

    outcome = await world.service.process(job(2, "tips"))

    assert outcome == Skipped("unsubscribed")
    assert world.sms.sent == []
    assert world.enrollment().status is EnrollmentStatus.EXITED


async def test_a_permanent_refusal_is_undeliverable_and_the_sequence_moves_on(world: World) -> None:
    """A bounced email is reported undeliverable; the step counts as handled and the next one is queued."""
    world.email.fail_with.append(DeliveryRejected("mailbox does not exist", "550", SuppressionReason.BOUNCED))

    outcome = await world.service.process(job())

    assert outcome == Undeliverable("mailbox does not exist", "550")
    assert world.enrollment().last_step_done == 1
    assert [p.job_id for p in world.publisher.published] == ["nurture_enr-1_2"]


async def test_a_provider_rate_limit_defers_without_moving_on(world: World) -> None:
    """A rate-limited send defers the step to the provider's retry time and records nothing."""
    retry_at = NOW + timedelta(minutes=2)
    world.email.fail_with.append(DeliveryRateLimited(retry_at))

    outcome = await world.service.process(job())

    assert outcome == Deferred(retry_at, "provider_rate_limited")
    assert world.enrollment().last_step_done == 0
    assert world.publisher.published == []


async def test_an_unconfirmed_send_is_not_repeated_but_moves_on(world: World) -> None:
    """An email whose earlier send never resolved is not sent again, and the sequence still moves on."""
    key = nurture_ledger_key(ENROLLMENT, 1, Channel.EMAIL)
    claim = SendClaim(key, ORG, CONTACT, Channel.EMAIL, MessagePurpose.MARKETING, EmailAddress("dana@example.com"))
    await world.ledger.claim(claim, NOW - timedelta(minutes=10))

    outcome = await world.service.process(job())

    assert outcome == Skipped("delivery_unconfirmed")
    assert world.email.sent == []
    assert world.enrollment().last_step_done == 1
    assert len(world.publisher.published) == 1


async def test_a_step_on_a_channel_the_contact_lacks_is_skipped_and_moves_on(world: World) -> None:
    """An SMS step for a contact without a phone number is skipped and the next step is queued."""
    world.enroll(last_step_done=1)
    world.change_contact(phone=None)

    outcome = await world.service.process(job(2, "tips"))

    assert outcome == Skipped("channel_unreachable")
    assert world.enrollment().last_step_done == 2
    assert [p.job_id for p in world.publisher.published] == ["nurture_enr-1_3"]


async def test_a_missing_variable_is_an_invalid_job_naming_it(world: World) -> None:
    """A template variable absent from the personalization fails the job, naming the variable."""
    world.enroll(last_step_done=1)

    with pytest.raises(InvalidJob) as raised:
        await world.service.process(NurtureJob(ORG, CONTACT, 2, "tips", {"first_name": "Dana"}))

    assert raised.value.field == "personalization.tip"
    assert world.sms.sent == []


async def test_email_html_part_is_escaped_and_text_part_is_not(world: World) -> None:
    """Personalization values are HTML-escaped in the HTML part only."""
    await world.service.process(job(first_name="<b>Tom & Jerry</b>"))

    sent = world.email.sent[0]
    assert sent.html == "<p>Hello &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert sent.text == "<p>Hello <b>Tom & Jerry</b></p>"


async def test_line_breaks_are_stripped_from_the_subject(world: World) -> None:
    """CR/LF in a personalized subject cannot inject a header: the subject stays one line."""
    await world.service.process(job(first_name="Dana\r\nBcc: victim@example.com\n"))

    assert world.email.sent[0].subject == "Welcome Dana Bcc: victim@example.com"


async def test_an_sms_of_1600_characters_is_sent(world: World) -> None:
    """An SMS body of exactly 1,600 characters is within the limit."""
    world.enroll(last_step_done=1)
    tip = "x" * (1600 - len("Hi Dana, tip: "))

    assert await world.service.process(job(2, "tips", tip=tip)) == Sent((Channel.SMS,))
    assert len(world.sms.sent[0].body) == 1600


async def test_an_sms_over_1600_characters_is_an_invalid_job(world: World) -> None:
    """An SMS body that renders one character too long fails the job instead of being cut."""
    world.enroll(last_step_done=1)
    tip = "x" * (1601 - len("Hi Dana, tip: "))

    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job(2, "tips", tip=tip))

    assert (raised.value.field, raised.value.problem) == ("template", "renders an SMS longer than 1600 characters")
    assert world.sms.sent == []


async def test_a_missing_template_is_an_invalid_job(world: World) -> None:
    """A step whose template the org lacks for the step's channel fails the job."""
    del world.templates.templates[(ORG, "welcome", Channel.EMAIL)]

    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job())

    assert raised.value.field == "template"


async def test_a_malformed_template_is_an_invalid_job(world: World) -> None:
    """A template with a broken placeholder fails the job as invalid, not as a crash."""
    world.templates.add(Template(ORG, "welcome", Channel.EMAIL, "Hello {{ first_name", "Welcome"))

    with pytest.raises(InvalidJob, match="template"):
        await world.service.process(job())


async def test_outside_the_marketing_window_the_step_is_deferred_not_dropped(world: World) -> None:
    """At 21:00 in Los Angeles the step waits for 08:00 local, then goes out."""
    world.clock.set(datetime(2026, 1, 16, 5, 0, tzinfo=UTC))  # 21:00 PST on the 15th

    outcome = await world.service.process(job())

    opening = datetime(2026, 1, 16, 16, 0, tzinfo=UTC)  # 08:00 PST on the 16th
    assert outcome == Deferred(opening, "outside_send_window")
    assert world.email.sent == []
    assert world.enrollment().status is EnrollmentStatus.ACTIVE
    world.clock.set(opening)
    assert await world.service.process(job()) == Sent((Channel.EMAIL,))


async def test_a_contact_without_zone_uses_the_org_zone_for_the_window(world: World) -> None:
    """Without a contact zone the org's (New York) local time decides the window."""
    world.change_contact(zone=None)
    world.clock.set(datetime(2026, 1, 16, 2, 0, tzinfo=UTC))  # 21:00 EST, 18:00 PST

    outcome = await world.service.process(job())

    assert outcome == Deferred(datetime(2026, 1, 16, 13, 0, tzinfo=UTC), "outside_send_window")


async def _marketing_claims(world: World, *ages: timedelta, purpose: MessagePurpose = MessagePurpose.MARKETING) -> None:
    for n, age in enumerate(ages):
        claim = SendClaim(f"other:{n}", ORG, CONTACT, Channel.SMS, purpose, PhoneNumber("+14155550100"))
        await world.ledger.claim(claim, NOW - age)


async def test_at_the_cap_the_step_waits_until_the_oldest_counted_message_is_24_hours_old(world: World) -> None:
    """Three marketing messages in the last 24 hours defer a fourth until the oldest of them ages out."""
    await _marketing_claims(world, timedelta(hours=23), timedelta(hours=10), timedelta(hours=1))

    outcome = await world.service.process(job())

    assert outcome == Deferred(NOW + timedelta(hours=1, seconds=1), "marketing_cap")
    assert world.email.sent == []
    world.clock.set(NOW + timedelta(hours=1, seconds=1))
    assert await world.service.process(job()) == Sent((Channel.EMAIL,))


async def test_the_cap_counts_marketing_messages_of_the_last_24_hours_only(world: World) -> None:
    """Older marketing messages and transactional ones do not count toward the cap."""
    await _marketing_claims(world, timedelta(hours=25), timedelta(hours=10), timedelta(hours=1))
    await _marketing_claims(world, timedelta(hours=2), purpose=MessagePurpose.TRANSACTIONAL)

    assert await world.service.process(job()) == Sent((Channel.EMAIL,))


async def test_a_cap_reopening_after_the_window_defers_to_the_next_opening(world: World) -> None:
    """When the cap reopens at night, the step waits for the marketing window to open."""
    world.clock.set(datetime(2026, 1, 16, 3, 0, tzinfo=UTC))  # 19:00 PST
    late_evening = timedelta(hours=13, minutes=30)  # claimed at 20:30 PST the day before: reopens at 20:30 PST
    await _marketing_claims(world, late_evening, late_evening, late_evening)

    outcome = await world.service.process(job())

    assert outcome == Deferred(datetime(2026, 1, 16, 16, 0, tzinfo=UTC), "marketing_cap")  # 08:00 PST


async def test_an_unknown_org_is_skipped(world: World) -> None:
    """A step of an org that no longer exists is skipped."""
    world.orgs.orgs.clear()

    assert await world.service.process(job()) == Skipped("org_not_found")
