"""Processing a process-reminder job: re-checks at send time, channel choice, the send window, send-once."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import attrs
import pytest

from domain.errors import DeliveryRateLimited, DeliveryRejected, InvalidJob, SuppressionReason
from domain.feedback import ConsentAction, ConsentChange
from domain.jobs import AppointmentScanJob, ReminderJob, ReminderKind
from domain.messages import LedgerState, SendClaim
from domain.models import AppointmentStatus, SendWindow, Template
from domain.outcomes import Deferred, Sent, Skipped, Undeliverable
from domain.values import Channel, EmailAddress, MessagePurpose, PhoneNumber
from tests.support.reminder_world import APPOINTMENT, CONTACT, ORG, ReminderWorld, local, make_world

NEW_YORK = "America/New_York"
NOW = local(NEW_YORK, 2026, 1, 21, 10)
STARTS_AT = local(NEW_YORK, 2026, 1, 21, 13)
NODE_MESSAGE = 'Reminder: your cleaning at 1pm today. Reply STOP to opt out. <b>"Bring your card"</b>'
SMS_KEY = "reminder:a-1:3h:20260121T180000Z:sms"
EMAIL_KEY = "reminder:a-1:3h:20260121T180000Z:email"


def _job(scheduled_for: datetime = STARTS_AT, message: str = NODE_MESSAGE) -> ReminderJob:
    return ReminderJob(ORG, CONTACT, APPOINTMENT, message, scheduled_for, ReminderKind.THREE_HOURS)


def _world(now: datetime = NOW, **contact: Any) -> ReminderWorld:
    world = make_world(now)
    world.add_org(NEW_YORK)
    world.add_contact(**contact)
    world.add_appointment(STARTS_AT)
    return world


async def test_node_message_is_sent_verbatim_by_sms() -> None:
    """A Node job's own message goes out unchanged by SMS under the reminder's ledger key."""
    world = _world()
    assert await world.service.process(_job()) == Sent((Channel.SMS,))
    [sms] = world.sms.sent
    assert (sms.body, sms.ledger_key, sms.to) == (NODE_MESSAGE, SMS_KEY, PhoneNumber("+14155550100"))
    assert world.email.sent == []


async def test_processing_the_same_job_twice_sends_once() -> None:
    """A job run twice (a retry after a crash) reaches the provider once and reports sent both times."""
    world = _world()
    assert await world.service.process(_job()) == Sent((Channel.SMS,))
    assert await world.service.process(_job()) == Sent((Channel.SMS,))
    assert len(world.sms.sent) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"status": AppointmentStatus.CANCELLED}, "appointment_cancelled", id="cancelled"),
        pytest.param({"status": AppointmentStatus.COMPLETED}, "appointment_passed", id="completed"),
        pytest.param({"starts_at": STARTS_AT + timedelta(hours=1)}, "appointment_moved", id="moved"),
        pytest.param({"starts_at": NOW}, "appointment_passed", id="started"),
    ],
)
async def test_appointment_changed_since_enqueue_is_skipped(change: dict[str, Any], reason: str) -> None:
    """A cancelled, completed, moved or already started appointment is skipped with its reason, nothing sent."""
    world = _world()
    world.add_appointment(**{"starts_at": STARTS_AT, "status": AppointmentStatus.SCHEDULED, **change})
    assert await world.service.process(_job()) == Skipped(reason)
    assert world.sms.sent == []


async def test_late_24h_job_is_dropped_once_the_3h_one_is_due() -> None:
    """Delayed 24h and 3h jobs released together after downtime send only the 3h reminder."""
    world = _world(local(NEW_YORK, 2026, 1, 21, 10, 5))
    day_before = attrs.evolve(_job(), reminder_type=ReminderKind.DAY_BEFORE)
    assert await world.service.process(day_before) == Skipped("superseded_by_3h_reminder")
    assert await world.service.process(_job()) == Sent((Channel.SMS,))
    assert len(world.sms.sent) == 1


async def test_24h_job_on_time_is_sent() -> None:
    """A 24h reminder processed at its due time goes out."""
    world = _world(local(NEW_YORK, 2026, 1, 20, 13))
    day_before = attrs.evolve(_job(), reminder_type=ReminderKind.DAY_BEFORE)
    assert await world.service.process(day_before) == Sent((Channel.SMS,))
    assert world.sms.sent[0].ledger_key == "reminder:a-1:24h:20260121T180000Z:sms"


async def test_missing_appointment_is_skipped() -> None:
    """A deleted appointment is skipped, not an error."""
    world = _world()
    del world.appointments.appointments[(ORG, APPOINTMENT)]
    assert await world.service.process(_job()) == Skipped("appointment_not_found")


async def test_scheduled_for_with_millisecond_precision_is_not_a_move() -> None:
    """A start stored with microseconds matches the job's millisecond JavaScript date."""
    world = _world()
    world.add_appointment(STARTS_AT + timedelta(microseconds=400))
    assert await world.service.process(_job()) == Sent((Channel.SMS,))


async def test_missing_or_inactive_org_is_skipped() -> None:
    """A reminder of an org deleted or deactivated since enqueue is skipped, as dunning and nurture skip theirs."""
    world = _world()
    world.orgs.add(attrs.evolve(world.orgs.orgs[ORG], active=False))
    assert await world.service.process(_job()) == Skipped("org_inactive")
    world.orgs.orgs.clear()
    assert await world.service.process(_job()) == Skipped("org_not_found")
    assert world.sms.sent == []


async def test_missing_contact_is_skipped() -> None:
    """A contact deleted since enqueue is skipped."""
    world = _world()
    world.contacts.contacts.clear()
    assert await world.service.process(_job()) == Skipped("contact_not_found")
    assert world.sms.sent == []


async def test_empty_message_is_an_invalid_job() -> None:
    """A job with a blank message can never succeed and names the field."""
    world = _world()
    with pytest.raises(InvalidJob, match="message"):
        await world.service.process(_job(message="  "))


@pytest.mark.parametrize("message", ["x" * 1601, "é" * 512_000, "\U0001f600" * 801])
async def test_a_message_over_the_sms_limit_fails_before_any_claim(message: str) -> None:
    """Over 1,600 characters (UTF-16 units, as JavaScript counts: an emoji is two), the reminder is a permanent,
    readable failure naming the field, raised before any look-up or ledger claim: nothing is claimed or sent."""
    world = _world()
    with pytest.raises(InvalidJob) as raised:
        await world.service.process(_job(message=message))
    assert str(raised.value) == "invalid job: message is longer than 1600 characters, the SMS body limit"
    assert world.sms.sent == world.email.sent == []
    assert world.ledger.rows == {}


async def test_a_message_of_exactly_1600_characters_is_sent() -> None:
    """The limit itself is allowed: 1,600 characters go out as one message."""
    world = _world()
    assert await world.service.process(_job(message="a" * 1600)) == Sent((Channel.SMS,))
    assert len(world.sms.sent) == 1


async def test_no_sms_consent_falls_back_to_email() -> None:
    """Without SMS consent the reminder goes by email with the default subject, escaped HTML and the job's text."""
    world = _world(sms_consent=False)
    assert await world.service.process(_job()) == Sent((Channel.EMAIL,))
    assert world.sms.sent == []
    [email] = world.email.sent
    assert (email.ledger_key, email.to, email.subject) == (
        EMAIL_KEY,
        EmailAddress("ana@example.com"),
        "Appointment reminder",
    )
    assert email.text == NODE_MESSAGE
    assert email.html == (
        "<p>Reminder: your cleaning at 1pm today. Reply STOP to opt out. "
        "&lt;b&gt;&quot;Bring your card&quot;&lt;/b&gt;</p>"
    )


async def test_no_phone_falls_back_to_email() -> None:
    """A contact without a phone number gets the reminder by email."""
    world = _world(phone=None)
    assert await world.service.process(_job()) == Sent((Channel.EMAIL,))


async def test_email_preference_is_honoured() -> None:
    """A contact who prefers email gets email even with a phone and SMS consent."""
    world = _world(preferred=Channel.EMAIL)
    assert await world.service.process(_job()) == Sent((Channel.EMAIL,))
    assert world.sms.sent == []


async def test_no_reachable_channel_is_undeliverable() -> None:
    """No SMS consent and no email address leaves no channel: undeliverable, nothing sent."""
    world = _world(sms_consent=False, email=None)
    assert await world.service.process(_job()) == Undeliverable("no_reachable_channel")


async def test_email_subject_comes_from_the_orgs_template_on_one_line() -> None:
    """The org's reminder_3h email template gives the subject, rendered and stripped of CR/LF."""
    world = _world(preferred=Channel.EMAIL)
    world.templates.add(
        Template(ORG, "reminder_3h", Channel.EMAIL, "ignored body", "See you at {{ appointment_time }}\r\nBcc: x")
    )
    await world.service.process(_job())
    [email] = world.email.sent
    assert email.subject == "See you at 1:00 PM Bcc: x"
    assert email.text == NODE_MESSAGE


async def test_suppressed_sms_falls_back_to_email() -> None:
    """A phone number already suppressed in the ledger gets nothing; the reminder goes by email."""
    world = _world()
    await world.ledger.suppress(ORG, Channel.SMS, PhoneNumber("+14155550100"), SuppressionReason.OPTED_OUT, NOW)
    assert await world.service.process(_job()) == Sent((Channel.EMAIL,))
    assert world.sms.sent == []


async def test_a_stop_received_by_the_webhooks_falls_back_to_email() -> None:
    """A STOP on the suppression list (not yet in the ledger) withdraws the number from every claim, as wired in
    production: the reminder goes by email, no SMS entry is written."""
    world = _world()
    stop = ConsentChange(
        Channel.SMS,
        PhoneNumber("+14155550100"),
        ConsentAction.WITHDRAWN,
        "twilio_inbound",
        "SMin1",
        NOW,
        SuppressionReason.OPTED_OUT,
    )
    await world.feedback.apply([], [stop])
    assert await world.service.process(_job()) == Sent((Channel.EMAIL,))
    assert (world.sms.sent, await world.ledger.get(SMS_KEY)) == ([], None)


async def test_retry_after_an_opt_out_does_not_add_an_email() -> None:
    """A job re-run after its SMS went out and the contact then opted out sends no email on top."""
    world = _world()
    assert await world.service.process(_job()) == Sent((Channel.SMS,))
    await world.ledger.suppress(ORG, Channel.SMS, PhoneNumber("+14155550100"), SuppressionReason.OPTED_OUT, NOW)
    assert await world.service.process(_job()) == Sent((Channel.SMS,))
    assert world.email.sent == []


async def test_suppressed_sms_without_email_is_skipped() -> None:
    """A phone number that opted out and no email address: skipped for consent; an invalid one as suppressed."""
    world = _world(email=None)
    await world.ledger.suppress(ORG, Channel.SMS, PhoneNumber("+14155550100"), SuppressionReason.OPTED_OUT, NOW)
    assert await world.service.process(_job()) == Skipped("consent")
    invalid = _world(email=None)
    await invalid.ledger.suppress(ORG, Channel.SMS, PhoneNumber("+14155550100"), SuppressionReason.INVALID_NUMBER, NOW)
    assert await invalid.service.process(_job()) == Skipped("recipient_suppressed")


async def test_provider_opt_out_rejection_falls_back_to_email() -> None:
    """Twilio's 21610 (recipient sent STOP) fails the SMS, suppresses the number, and the email goes instead."""
    world = _world()
    world.sms.fail_with.append(DeliveryRejected("recipient opted out", "21610", SuppressionReason.OPTED_OUT))
    assert await world.service.process(_job()) == Sent((Channel.EMAIL,))
    sms_entry = await world.ledger.get(SMS_KEY)
    assert sms_entry is not None
    assert sms_entry.state is LedgerState.FAILED
    assert world.ledger.suppressions == {(ORG, Channel.SMS, "+14155550100"): SuppressionReason.OPTED_OUT}
    assert len(world.email.sent) == 1
    assert await world.service.process(_job()) == Sent((Channel.EMAIL,))
    assert len(world.email.sent) == 1


async def test_other_rejection_is_undeliverable_without_fallback() -> None:
    """A permanent refusal that suppresses nothing is undeliverable with the provider's code; no email follows."""
    world = _world()
    world.sms.fail_with.append(DeliveryRejected("message body refused", "30007"))
    assert await world.service.process(_job()) == Undeliverable("message body refused", "30007")
    assert world.email.sent == []


async def test_rate_limit_defers_the_job() -> None:
    """A rate-limited send is deferred to the provider's retry time."""
    world = _world()
    retry_at = NOW + timedelta(seconds=30)
    world.sms.fail_with.append(DeliveryRateLimited(retry_at, "20429"))
    assert await world.service.process(_job()) == Deferred(retry_at, "provider_rate_limited")


async def test_unconfirmed_email_is_skipped_not_resent() -> None:
    """An email whose earlier send may have gone out is skipped as unconfirmed rather than sent again."""
    world = _world(preferred=Channel.EMAIL)
    earlier = NOW - timedelta(minutes=10)
    address = EmailAddress("ana@example.com")
    claimed = await world.ledger.claim(
        SendClaim(EMAIL_KEY, ORG, CONTACT, Channel.EMAIL, MessagePurpose.TRANSACTIONAL, address), earlier
    )
    assert claimed.entry is not None
    await world.ledger.mark_unknown(EMAIL_KEY, claimed.entry.version, "provider did not answer in time", earlier)
    assert await world.service.process(_job()) == Skipped("delivery_unconfirmed")
    assert world.email.sent == []


async def test_closed_window_defers_to_the_opening() -> None:
    """At 05:00 contact-local, a reminder for a 10:00 appointment is deferred to 07:00."""
    world = _world(local(NEW_YORK, 2026, 1, 21, 5))
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 10))
    job = _job(local(NEW_YORK, 2026, 1, 21, 10))
    assert await world.service.process(job) == Deferred(local(NEW_YORK, 2026, 1, 21, 7), "send_window_closed")
    assert world.sms.sent == []


async def test_closed_window_with_no_time_left_is_skipped() -> None:
    """At 22:00 before a 06:30 appointment no allowed time is left: skipped."""
    starts_at = local(NEW_YORK, 2026, 1, 22, 6, 30)
    world = _world(local(NEW_YORK, 2026, 1, 21, 22))
    world.add_appointment(starts_at)
    assert await world.service.process(_job(starts_at)) == Skipped("send_window_closed")


async def test_window_is_read_in_the_contacts_zone() -> None:
    """10:00 in New York is 07:00 in Los Angeles: open there with the default window, closed with a 09:00 one."""
    world = _world(zone="America/Los_Angeles")
    assert await world.service.process(_job()) == Sent((Channel.SMS,))
    world = _world(zone="America/Los_Angeles")
    world.add_org(NEW_YORK, SendWindow(time(9), time(17)))
    assert await world.service.process(_job()) == Deferred(
        local("America/Los_Angeles", 2026, 1, 21, 9), "send_window_closed"
    )


async def test_scanned_job_sends_the_rendered_text() -> None:
    """A job the scan queued is sent with the text the scan rendered."""
    world = _world(local(NEW_YORK, 2026, 1, 21, 9, 30))
    await world.service.scan(AppointmentScanJob())
    [published] = world.publisher.published
    assert isinstance(published.job, ReminderJob)
    assert published.run_at is not None
    world.clock.set(published.run_at)
    assert await world.service.process(published.job) == Sent((Channel.SMS,))
    assert world.sms.sent[0].body == (
        "Hi Ana, this is a reminder of your appointment with Bright Smiles on Wednesday, January 21 at 1:00 PM."
    )
