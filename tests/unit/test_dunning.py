"""Dunning through its ports: payload validation, escalation stages, the stop rule, once per stage, send window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest

from domain.dunning import DunningService, dunning_ledger_key, stage_for
from domain.errors import DeliveryRateLimited, DeliveryRejected, InvalidJob, SuppressionReason
from domain.jobs import DunningJob
from domain.messages import LedgerState, SendClaim
from domain.models import (
    DEFAULT_DUNNING_POLICY,
    Contact,
    DunningStage,
    DunningTone,
    Organization,
    Template,
)
from domain.outcomes import Deferred, Sent, Skipped, Undeliverable
from domain.values import Channel, EmailAddress, MessagePurpose, PhoneNumber, zone
from tests.support.fakes.clock import FakeClock
from tests.support.worlds import CONTACT, ORG, MessagingWorld

# 12:00 in Berlin (the contact's zone), inside the 07:00-21:00 transactional window
NOW = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
LINK = "https://pay.example.com/i/42?t=a&b=c"


@attrs.define(kw_only=True)
class World(MessagingWorld):
    service: DunningService = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.service = self.services.dunning

    def change_org(self, **changes: Any) -> None:
        self.orgs.add(attrs.evolve(self.orgs.orgs[ORG], **changes))


def job(days_overdue: int = 3, amount: str = "125.50", payment_link: str = LINK) -> DunningJob:
    return DunningJob(ORG, CONTACT, Decimal(amount), days_overdue, payment_link)


@pytest.fixture
def world() -> World:
    w = World(clock=FakeClock(NOW))
    w.orgs.add(Organization(ORG, "Acme Dental", zone("America/New_York"), "USD"))
    w.contacts.add(
        Contact(
            CONTACT,
            ORG,
            "Dana",
            PhoneNumber("+4915112345678"),
            EmailAddress("dana@example.com"),
            zone("Europe/Berlin"),
        )
    )
    w.invoices.owe(ORG, CONTACT, 12550)
    return w


@pytest.mark.parametrize(
    ("days_overdue", "tone", "channels", "subject"),
    [
        (1, DunningTone.FRIENDLY, (Channel.EMAIL,), "A friendly payment reminder from Acme Dental"),
        (6, DunningTone.FRIENDLY, (Channel.EMAIL,), "A friendly payment reminder from Acme Dental"),
        (7, DunningTone.FIRM, (Channel.EMAIL, Channel.SMS), "Payment overdue: 125.50 USD"),
        (13, DunningTone.FIRM, (Channel.EMAIL, Channel.SMS), "Payment overdue: 125.50 USD"),
        (14, DunningTone.URGENT, (Channel.EMAIL, Channel.SMS), "Urgent: 125.50 USD is 14 days overdue"),
        (29, DunningTone.URGENT, (Channel.EMAIL, Channel.SMS), "Urgent: 125.50 USD is 29 days overdue"),
        (30, DunningTone.FINAL, (Channel.EMAIL, Channel.SMS), "Final notice: 125.50 USD overdue"),
        (400, DunningTone.FINAL, (Channel.EMAIL, Channel.SMS), "Final notice: 125.50 USD overdue"),
    ],
)
async def test_each_stage_boundary_picks_its_tone_and_channels(
    world: World, days_overdue: int, tone: DunningTone, channels: tuple[Channel, ...], subject: str
) -> None:
    """Days 1-6 send a friendly email, 7-13 firm email and SMS, 14-29 urgent, from 30 the final notice."""
    outcome = await world.service.process(job(days_overdue))

    assert outcome == Sent(channels)
    assert [m.subject for m in world.email.sent] == [subject]
    assert len(world.sms.sent) == (1 if Channel.SMS in channels else 0)
    stage = stage_for(DEFAULT_DUNNING_POLICY, days_overdue)
    assert stage is not None
    assert stage.tone is tone
    assert all(m.ledger_key.split(":")[3] == str(stage.min_days_overdue) for m in world.email.sent + world.sms.sent)


async def test_the_message_carries_amount_and_escaped_payment_link(world: World) -> None:
    """The SMS states the amount and the link as is; the HTML email escapes the link's '&'."""
    await world.service.process(job(7))

    assert world.sms.sent[0].body.endswith("125.50 USD is 7 days overdue. Please pay now: " + LINK)
    html = world.email.sent[0].html
    assert html is not None
    assert "https://pay.example.com/i/42?t=a&amp;b=c" in html
    assert LINK in world.email.sent[0].text


async def test_an_org_policy_and_template_replace_the_defaults(world: World) -> None:
    """An org's own stages and templates decide the tone, channels and wording."""
    world.change_org(dunning_policy=(DunningStage(3, DunningTone.URGENT, frozenset({Channel.SMS})),))
    world.templates.add(Template(ORG, "dunning_urgent", Channel.SMS, "{{ first_name }}, pay {{ amount }} now"))

    assert await world.service.process(job(2)) == Skipped("before_first_stage")
    assert await world.service.process(job(3)) == Sent((Channel.SMS,))
    assert [m.body for m in world.sms.sent] == ["Dana, pay 125.50 USD now"]
    assert world.email.sent == []


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        ("0", "must be greater than 0"),
        ("-5", "must be greater than 0"),
        ("1.005", "has more than 2 decimal places"),
        ("NaN", "is not a finite number"),
        ("Infinity", "is not a finite number"),
        ("-Infinity", "is not a finite number"),
    ],
)
async def test_an_invalid_amount_is_an_invalid_job_naming_the_field_only(
    world: World, amount: str, problem: str
) -> None:
    """Zero, negative, sub-cent, NaN and infinite amounts fail the job, naming the field but never the value."""
    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job(amount=amount))

    assert (raised.value.field, raised.value.problem) == ("amount", problem)
    assert world.email.sent == []


@pytest.mark.parametrize(
    ("amount", "problem"),
    [("-5", "must be greater than 0"), ("0", "must be greater than 0"), ("1.0001", "has more than 3 decimal places")],
)
async def test_an_invalid_amount_fails_even_for_an_org_that_does_not_exist(
    world: World, amount: str, problem: str
) -> None:
    """The payload is validated before any look-up: an unknown org does not turn an invalid job into a skip."""
    world.orgs.orgs.clear()
    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job(amount=amount, days_overdue=7))
    assert (raised.value.field, raised.value.problem) == ("amount", problem)


async def test_a_currency_without_decimals_refuses_cents(world: World) -> None:
    """The decimal places allowed follow the org's currency: 1.5 JPY is not an amount."""
    world.change_org(currency="JPY")

    with pytest.raises(InvalidJob, match="amount"):
        await world.service.process(job(amount="1.5"))


@pytest.mark.parametrize(
    "link",
    [
        "http://pay.example.com/i/42",
        "https://",
        "https:///i/42",
        "pay.example.com/i/42",
        "javascript:alert(1)",
        "https://pay.example.com/i/4 2",
        "https://pay.example.com/i/42\n",
        "https://pay.example.com/i/42\u200b",
        "https://user:secret@pay.example.com/i/42",
        "https://pay.example.com:port/i/42",
        "https://[pay.example.com/i/42",
        "",
    ],
)
async def test_a_payment_link_that_is_not_https_is_an_invalid_job(world: World, link: str) -> None:
    """Anything but a plain https URL with a host fails the job without echoing the link."""
    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job(payment_link=link))

    assert (raised.value.field, raised.value.problem) == ("paymentLink", "is not an https URL")


@pytest.mark.parametrize("days_overdue", [0, -3])
async def test_days_overdue_below_one_is_an_invalid_job(world: World, days_overdue: int) -> None:
    """A dunning job for something not overdue contradicts itself and fails as invalid."""
    with pytest.raises(InvalidJob) as raised:
        await world.service.process(job(days_overdue))

    assert raised.value.field == "daysOverdue"


async def test_nothing_is_sent_once_the_balance_is_paid(world: World) -> None:
    """A contact who paid (or whose invoice was voided) since enqueue is skipped."""
    world.invoices.owe(ORG, CONTACT, 0)

    assert await world.service.process(job(7)) == Skipped("nothing_owed")
    assert world.email.sent == world.sms.sent == []


async def test_a_partly_paid_balance_is_what_the_message_states(world: World) -> None:
    """When less is owed now than the job asked to chase, the message states the current balance."""
    world.invoices.owe(ORG, CONTACT, 2000)

    await world.service.process(job(7))

    assert "20.00 USD" in world.sms.sent[0].body


async def test_a_higher_balance_does_not_raise_the_amount_chased(world: World) -> None:
    """Other debts of the contact do not change the amount the job asked to chase."""
    world.invoices.owe(ORG, CONTACT, 99900)

    await world.service.process(job(7))

    assert "125.50 USD" in world.sms.sent[0].body


async def test_each_stage_is_sent_at_most_once(world: World) -> None:
    """A second job in the same stage sends nothing new; the next stage sends again."""
    await world.service.process(job(8))
    again = await world.service.process(job(10))

    assert again == Sent((Channel.EMAIL, Channel.SMS))
    assert (len(world.email.sent), len(world.sms.sent)) == (1, 1)
    await world.service.process(job(14))
    assert (len(world.email.sent), len(world.sms.sent)) == (2, 2)
    key = dunning_ledger_key(ORG, CONTACT, DEFAULT_DUNNING_POLICY[2], Channel.SMS)
    assert key == "dunning:org-1:c-1:14:sms"
    entry = await world.ledger.get(key)
    assert entry is not None
    assert entry.state is LedgerState.SENT


async def test_outside_the_window_the_job_is_deferred_to_the_opening(world: World) -> None:
    """At 21:30 in Berlin the job waits for 07:00 Berlin time, then sends."""
    world.clock.set(datetime(2026, 1, 15, 20, 30, tzinfo=UTC))

    outcome = await world.service.process(job(7))

    opening = datetime(2026, 1, 16, 6, 0, tzinfo=UTC)
    assert outcome == Deferred(opening, "outside_send_window")
    assert world.email.sent == world.sms.sent == []
    world.clock.set(opening)
    assert await world.service.process(job(7)) == Sent((Channel.EMAIL, Channel.SMS))


async def test_a_channel_without_consent_is_left_out(world: World) -> None:
    """A contact who refused SMS gets the firm stage by email only."""
    world.change_contact(sms_consent=False)

    assert await world.service.process(job(7)) == Sent((Channel.EMAIL,))
    assert world.sms.sent == []


async def test_no_reachable_channel_is_undeliverable(world: World) -> None:
    """A contact with no email at a stage that only emails cannot be reached."""
    world.change_contact(email=None)

    assert await world.service.process(job(3)) == Undeliverable("no_reachable_channel")


async def test_a_deferred_channel_defers_the_job_and_the_sent_one_is_not_repeated(world: World) -> None:
    """A rate-limited SMS defers the job; the rerun sends the SMS only, not the email again."""
    retry_at = NOW + timedelta(minutes=5)
    world.sms.fail_with.append(DeliveryRateLimited(retry_at))

    assert await world.service.process(job(7)) == Deferred(retry_at, "provider_rate_limited")
    assert len(world.email.sent) == 1
    world.clock.set(retry_at)
    assert await world.service.process(job(7)) == Sent((Channel.EMAIL, Channel.SMS))
    assert (len(world.email.sent), len(world.sms.sent)) == (1, 1)


async def test_two_deferred_channels_defer_the_job_until_the_later_time(world: World) -> None:
    """When both channels are rate limited the job waits until both may be tried again."""
    world.email.fail_with.append(DeliveryRateLimited(NOW + timedelta(minutes=10)))
    world.sms.fail_with.append(DeliveryRateLimited(NOW + timedelta(minutes=5)))

    assert await world.service.process(job(7)) == Deferred(NOW + timedelta(minutes=10), "provider_rate_limited")


async def test_a_refused_single_channel_is_undeliverable(world: World) -> None:
    """A bounced email at an email-only stage is reported undeliverable with the provider's code."""
    world.email.fail_with.append(DeliveryRejected("mailbox does not exist", "550", SuppressionReason.BOUNCED))

    assert await world.service.process(job(3)) == Undeliverable("mailbox does not exist", "550")


async def test_one_refused_channel_does_not_hide_the_other_sent_one(world: World) -> None:
    """When the email bounces but the SMS goes out, the outcome is sent by SMS."""
    world.email.fail_with.append(DeliveryRejected("mailbox does not exist", "550", SuppressionReason.BOUNCED))

    assert await world.service.process(job(7)) == Sent((Channel.SMS,))


async def test_a_suppressed_address_is_undeliverable(world: World) -> None:
    """An email address suppressed after a bounce gets nothing and the job says why."""
    await world.ledger.suppress(ORG, Channel.EMAIL, EmailAddress("dana@example.com"), SuppressionReason.BOUNCED, NOW)

    assert await world.service.process(job(3)) == Undeliverable("suppressed_bounced")
    assert world.email.sent == []


async def test_an_unconfirmed_send_is_not_repeated(world: World) -> None:
    """An email whose earlier send never resolved is not sent again; the job reports it unconfirmed."""
    stage = DEFAULT_DUNNING_POLICY[0]
    key = dunning_ledger_key(ORG, CONTACT, stage, Channel.EMAIL)
    claim = SendClaim(key, ORG, CONTACT, Channel.EMAIL, MessagePurpose.TRANSACTIONAL, EmailAddress("dana@example.com"))
    await world.ledger.claim(claim, NOW - timedelta(minutes=10))

    assert await world.service.process(job(3)) == Skipped("delivery_unconfirmed")
    assert world.email.sent == []


async def test_an_unknown_contact_is_skipped(world: World) -> None:
    """A contact deleted since enqueue gets nothing and the job is not an error."""
    world.contacts.contacts.clear()

    assert await world.service.process(job()) == Skipped("contact_not_found")
