"""AI-personalized nurture copy through the nurture service: opt-in, guard rails, budget, and the same words once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from domain.copy_personalization import CopyPersonalization
from domain.errors import TransientError
from domain.messages import SendClaim, SmsMessage
from domain.models import Contact, Organization, Sequence, Template
from domain.nurture import nurture_ledger_key
from domain.outcomes import Deferred, Sent
from domain.personalization import (
    CopySource,
    DailyBudget,
    FallbackReason,
    PersonalizationFailed,
    PersonalizationOutcome,
    PersonalizedCopy,
)
from domain.values import Channel, EmailAddress, MessagePurpose, OrgId, PhoneNumber, zone
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.personalization import (
    FAKE_MODEL,
    FakeCopyPersonalizer,
    InMemoryPersonalizationBudgets,
    InMemoryPersonalizedCopies,
    RecordingPersonalizationRecorder,
)
from tests.support.worlds import CONTACT, ORG
from tests.unit.test_nurture import ENROLLMENT, NOW, SEQUENCE, STEPS, World, job

TIPS = "Hi {{ first_name }}, tip: {{ tip }}. Book: https://acme.example/book Reply STOP to opt out"
PLAIN_TIPS = "Hi Dana, tip: floss daily. Book: https://acme.example/book Reply STOP to opt out"
AI_TIPS = "Dana, a warm hello! Tip: floss daily. Book: https://acme.example/book Reply STOP to opt out"
SMS_KEY = nurture_ledger_key(ENROLLMENT, 2, Channel.SMS)


@attrs.define(kw_only=True)
class AiWorld(World):
    model: FakeCopyPersonalizer = attrs.Factory(FakeCopyPersonalizer)
    copies: InMemoryPersonalizedCopies = attrs.Factory(InMemoryPersonalizedCopies)
    budgets: InMemoryPersonalizationBudgets = attrs.Factory(InMemoryPersonalizationBudgets)
    recorder: RecordingPersonalizationRecorder = attrs.Factory(RecordingPersonalizationRecorder)
    budget: DailyBudget = attrs.field(factory=lambda: DailyBudget(requests=100, tokens=100_000))

    def personalization(self) -> CopyPersonalization:
        return CopyPersonalization(self.model, self.copies, self.budgets, self.recorder, self.clock, self.budget)

    def opt_in(self, instruction: str = "warmer", body: str = TIPS, required: tuple[str, ...] = ()) -> None:
        template = Template(ORG, "tips", Channel.SMS, body, None, instruction, required)
        self.templates.add(template)

    def answers(self, *answers: str | PersonalizationFailed) -> None:
        self.model.script.extend(
            a if isinstance(a, PersonalizationFailed) else PersonalizedCopy(a, None, FAKE_MODEL, 120, 30)
            for a in answers
        )


@pytest.fixture
def ai() -> AiWorld:
    """test_nurture's world (org, contact, sequence, templates) with personalization wired in, at step 2 (SMS)."""
    w = AiWorld(clock=FakeClock(NOW))
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
    w.templates.add(Template(ORG, "tips", Channel.SMS, "Hi {{ first_name }}, tip: {{ tip }}"))
    w.enroll(last_step_done=1)
    return w


async def test_an_opted_in_template_sends_the_models_copy_and_stores_it_first(ai: AiWorld) -> None:
    """The model's text goes out, is kept under the send's ledger key, and the attempt is counted with tokens."""
    ai.opt_in()
    ai.answers(AI_TIPS)

    assert await ai.service.process(job(2, "tips")) == Sent((Channel.SMS,))

    assert [m.body for m in ai.sms.sent] == [AI_TIPS]
    stored = ai.copies.copies[SMS_KEY]
    assert (stored.source, stored.body, stored.fallback) == (CopySource.MODEL, AI_TIPS, None)
    assert ai.recorder.outcomes == [PersonalizationOutcome(ORG, Channel.SMS, None, FAKE_MODEL, 120, 30)]
    assert ai.budgets.used[(ORG, NOW.astimezone(ai.orgs.orgs[ORG].zone).date())] == [1, 150]


async def test_a_template_that_does_not_opt_in_never_asks_the_model(ai: AiWorld) -> None:
    """Without an instruction the template is sent as written, nothing is stored or counted."""
    await ai.service.process(job(2, "tips"))

    assert [m.body for m in ai.sms.sent] == ["Hi Dana, tip: floss daily"]
    assert (ai.model.requests, ai.copies.copies, ai.recorder.outcomes) == ([], {}, [])


async def test_the_model_sees_the_rendered_template_the_instruction_and_only_used_values(ai: AiWorld) -> None:
    """Unused values and values carrying contact details never reach the model."""
    ai.opt_in("mention their last visit", "Hi {{ first_name }} ({{ phone }}), tip: {{ tip }}")
    ai.answers("Hi Dana (+14155550100), tip: floss daily")

    await ai.service.process(job(2, "tips", phone="+14155550100", last_name="Smith"))

    (request,) = ai.model.requests
    assert request.body == "Hi Dana (+14155550100), tip: floss daily"
    assert request.instruction == "mention their last visit"
    assert dict(request.values) == {"first_name": "Dana", "tip": "floss daily"}
    assert request.max_body_chars == 1600


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (PersonalizationFailed(FallbackReason.TIMEOUT), FallbackReason.TIMEOUT),
        (PersonalizationFailed(FallbackReason.RATE_LIMITED), FallbackReason.RATE_LIMITED),
        (PersonalizationFailed(FallbackReason.REFUSED), FallbackReason.REFUSED),
        ("Dana! Book: https://acme.example/book", FallbackReason.REQUIRED_LITERAL_DROPPED),
        ("Dana! Tip: floss. Reply STOP to opt out", FallbackReason.REQUIRED_LINK_DROPPED),
        (AI_TIPS + " https://x.example", FallbackReason.LINK_ADDED),
        (AI_TIPS + "!" * 1600, FallbackReason.TOO_LONG),
    ],
)
async def test_any_failure_sends_the_plain_template_and_counts_the_reason(
    ai: AiWorld, answer: str | PersonalizationFailed, reason: FallbackReason
) -> None:
    """An error, a refusal or a broken rule: the contact gets the template, the reason is stored and counted."""
    ai.opt_in(required=("Reply STOP to opt out",))
    ai.answers(answer)

    assert await ai.service.process(job(2, "tips")) == Sent((Channel.SMS,))

    assert [m.body for m in ai.sms.sent] == [PLAIN_TIPS]
    assert ai.copies.copies[SMS_KEY].fallback is reason
    assert [o.fallback for o in ai.recorder.outcomes] == [reason]


async def test_an_exhausted_daily_budget_falls_back_without_asking(ai: AiWorld) -> None:
    """Past the org's requests (or tokens) of the local day the template goes out and the model is not asked."""
    ai.opt_in()
    day = NOW.astimezone(ai.orgs.orgs[ORG].zone).date()
    ai.budgets.used[(ORG, day)] = [0, ai.budget.tokens]

    await ai.service.process(job(2, "tips"))

    assert (ai.model.requests, [m.body for m in ai.sms.sent]) == ([], [PLAIN_TIPS])
    assert [o.fallback for o in ai.recorder.outcomes] == [FallbackReason.BUDGET_EXHAUSTED]


async def test_the_budget_is_per_org_and_local_day(ai: AiWorld) -> None:
    """One request a day: a second send that day falls back; another org, or the org's next local day, is fresh."""
    personalization = CopyPersonalization(
        ai.model, ai.copies, ai.budgets, ai.recorder, ai.clock, DailyBudget(requests=1, tokens=100_000)
    )
    template = Template(ORG, "tips", Channel.SMS, "Hi", None, "warmer")
    org = ai.orgs.orgs[ORG]  # New York: NOW is 13:00 there
    other_org = attrs.evolve(org, id=OrgId("org-2"))
    message = SmsMessage("k-1", PhoneNumber("+14155550100"), "Hi")

    async def send(key: str, at: datetime, to_org: Organization = org) -> FallbackReason | None:
        ai.clock.set(at)
        await personalization.copy_for(
            to_org, template, attrs.evolve(message, ledger_key=key), {}, claimed_before=False
        )
        return ai.copies.copies[key].fallback

    assert await send("k-1", NOW) is None
    assert await send("k-2", NOW) is FallbackReason.BUDGET_EXHAUSTED
    assert await send("k-3", NOW, other_org) is None
    assert await send("k-4", NOW + timedelta(hours=10, minutes=59)) is FallbackReason.BUDGET_EXHAUSTED  # 23:59
    assert await send("k-5", NOW + timedelta(hours=11)) is None  # midnight in New York


async def test_a_retry_sends_the_stored_words_and_never_asks_again(ai: AiWorld) -> None:
    """A send that failed before reaching the provider is retried with the same text; the model was asked once."""
    ai.opt_in()
    ai.answers(AI_TIPS, "A different answer the second time")
    ai.sms.fail_with.append(TransientError("connection refused"))

    with pytest.raises(TransientError):
        await ai.service.process(job(2, "tips"))
    assert await ai.service.process(job(2, "tips")) == Sent((Channel.SMS,))

    assert [m.body for m in ai.sms.sent] == [AI_TIPS]
    assert len(ai.model.requests) == 1
    assert len(ai.recorder.outcomes) == 1


async def test_a_send_claimed_before_any_copy_was_stored_keeps_the_template(ai: AiWorld) -> None:
    """A ledger entry without a stored copy was claimed with the template's words: they stay, the model is not
    asked (the earlier run may have reached the provider with them)."""
    ai.opt_in()
    contact: Contact = ai.contacts.contacts[(ORG, CONTACT)]
    assert contact.phone is not None
    claim = SendClaim(SMS_KEY, ORG, CONTACT, Channel.SMS, MessagePurpose.MARKETING, contact.phone)
    await ai.ledger.claim(claim, NOW - timedelta(minutes=5))

    ai.clock.advance(timedelta(minutes=2))
    await ai.service.process(job(2, "tips"))

    assert ai.model.requests == []
    assert ai.copies.copies[SMS_KEY].fallback is FallbackReason.CLAIMED_BEFORE


async def test_a_closed_window_defers_before_the_model_is_asked(ai: AiWorld) -> None:
    """The send window runs first: a deferred step costs no request."""
    ai.opt_in()
    ai.clock.set(datetime(2026, 1, 16, 5, 0, tzinfo=UTC))  # 21:00 in Los Angeles

    outcome = await ai.service.process(job(2, "tips"))

    assert isinstance(outcome, Deferred)
    assert (ai.model.requests, ai.copies.copies) == ([], {})


async def test_an_email_gets_the_models_subject_text_and_an_escaped_html_part(ai: AiWorld) -> None:
    """For email the model rewrites subject and text; the HTML part is built from the text, escaped."""
    ai.enrollments.add(attrs.evolve(ai.enrollment(), last_step_done=0))
    ai.templates.add(
        Template(ORG, "welcome", Channel.EMAIL, "<p>Hello {{ first_name }}</p>", "Welcome {{ first_name }}", "warm")
    )
    ai.model.script.append(PersonalizedCopy("Dear Dana & co, so glad!", "Welcome, Dana", FAKE_MODEL, 5, 5))

    await ai.service.process(job())

    (request,) = ai.model.requests
    assert (request.body, request.subject) == ("Hello Dana", "Welcome Dana")
    sent = ai.email.sent[-1]
    assert (sent.subject, sent.text, sent.html) == (
        "Welcome, Dana",
        "Dear Dana & co, so glad!",
        "<p>Dear Dana &amp; co, so glad!</p>",
    )


@pytest.mark.parametrize(
    ("first", "same_day", "next_day"),
    [
        # Santiago falls back at 24:00 on 2026-04-04: 23:00-24:00 happens twice, the 4th lasts 25 hours
        ("2026-04-05T02:59", "2026-04-05T03:30", "2026-04-05T04:00"),
        # and springs forward at 24:00 on 2026-09-05: the 6th begins at 01:00
        ("2026-09-06T03:00", "2026-09-06T03:59", "2026-09-06T04:00"),
    ],
    ids=["fall_back", "spring_forward"],
)
async def test_the_budget_day_follows_the_orgs_clock_across_dst(
    ai: AiWorld, first: str, same_day: str, next_day: str
) -> None:
    """The allowance resets at the org's local midnight, however long the local day was."""
    personalization = CopyPersonalization(ai.model, ai.copies, ai.budgets, ai.recorder, ai.clock, DailyBudget(1, 10**6))
    org = attrs.evolve(ai.orgs.orgs[ORG], zone=zone("America/Santiago"))
    template = Template(ORG, "tips", Channel.SMS, "Hi", None, "warmer")

    async def send(key: str, at: str) -> FallbackReason | None:
        ai.clock.set(datetime.fromisoformat(at).replace(tzinfo=UTC))
        message = SmsMessage(key, PhoneNumber("+14155550100"), "Hi")
        await personalization.copy_for(org, template, message, {}, claimed_before=False)
        return ai.copies.copies[key].fallback

    assert await send("k-1", first) is None
    assert await send("k-2", same_day) is FallbackReason.BUDGET_EXHAUSTED
    assert await send("k-3", next_day) is None


async def test_with_personalization_off_a_retry_still_sends_the_stored_words(ai: AiWorld) -> None:
    """Words stored while the key was set stay the send's words after it is removed; a send without stored words
    goes out as written, nothing stored, the model never asked."""
    ai.opt_in()
    ai.answers(AI_TIPS)
    ai.sms.fail_with.append(TransientError("connection refused"))
    with pytest.raises(TransientError):
        await ai.service.process(job(2, "tips"))
    personalization = ai.service.personalization
    assert personalization is not None
    personalization.personalizer = None  # OPENAI_API_KEY removed, workers restarted

    await ai.service.process(job(2, "tips"))
    other = await personalization.copy_for(
        ai.orgs.orgs[ORG],
        ai.templates.templates[(ORG, "tips", Channel.SMS)],
        SmsMessage("nurture:enr-9:1:sms", PhoneNumber("+14155550100"), PLAIN_TIPS),
        {},
        claimed_before=False,
    )

    assert [m.body for m in ai.sms.sent] == [AI_TIPS]
    assert isinstance(other, SmsMessage)
    assert other.body == PLAIN_TIPS
    assert "nurture:enr-9:1:sms" not in ai.copies.copies
    assert len(ai.model.requests) == 1
