"""The Dispatcher's at-most-once rules, one test per rule of domain/delivery.py's docstring and per outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from random import Random

import attrs
import pytest

from domain.delivery import Delivered, Dispatcher, Suppressed, Unconfirmed
from domain.errors import (
    ConfigurationError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    SuppressionReason,
    TransientError,
)
from domain.messages import EmailMessage, LedgerEntry, LedgerState, ProviderReceipt, SendClaim, SmsMessage
from domain.outcomes import Deferred, Undeliverable
from domain.reconciliation import ReconciliationReport, UnknownSendReconciler
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.feedback import InMemoryDeliveryFeedback
from tests.support.fakes.ledger import InMemorySendLedger
from tests.support.fakes.senders import FakeEmailSender, FakeSmsSender

T0 = datetime(2026, 1, 21, 15, 0, tzinfo=UTC)
ORG = OrgId("org-1")
CONTACT = ContactId("c-1")
PHONE = PhoneNumber("+14155550100")
ADDRESS = EmailAddress("ana@example.com")
SETTLE = timedelta(seconds=60)
RECHECK = timedelta(seconds=5)
NO_JITTER = timedelta(0)
MARGIN = timedelta(seconds=1)  # the Dispatcher's default


@attrs.define
class _LostReclaimLedger(InMemorySendLedger):
    """A ledger where another run reclaims the entry between our look and our reclaim."""

    async def reclaim(self, key: str, version: int, at: datetime) -> LedgerEntry | None:
        entry = await self.get(key)
        assert entry is not None
        await super().reclaim(key, entry.version, at)
        return await super().reclaim(key, version, at)


@attrs.define
class Setup:
    clock: FakeClock
    ledger: InMemorySendLedger
    sms: FakeSmsSender
    email: FakeEmailSender
    dispatcher: Dispatcher


def _setup(ledger: InMemorySendLedger | None = None) -> Setup:
    clock = FakeClock(T0)
    ledger = ledger if ledger is not None else InMemorySendLedger()
    sms = FakeSmsSender(clock=clock)
    email = FakeEmailSender(clock)
    return Setup(clock, ledger, sms, email, Dispatcher(ledger, sms, email, clock, settle=SETTLE, jitter=NO_JITTER))


def _sms(key: str = "k:sms") -> tuple[SendClaim, SmsMessage]:
    claim = SendClaim(key, ORG, CONTACT, Channel.SMS, MessagePurpose.TRANSACTIONAL, PHONE)
    return claim, SmsMessage(key, PHONE, "hello")


def _email(key: str = "k:email") -> tuple[SendClaim, EmailMessage]:
    claim = SendClaim(key, ORG, CONTACT, Channel.EMAIL, MessagePurpose.TRANSACTIONAL, ADDRESS)
    return claim, EmailMessage(key, ADDRESS, "subject", "hello")


async def test_sms_is_sent_and_recorded() -> None:
    """A fresh message is claimed, sent, and its entry marked SENT with the provider's id."""
    s = _setup()
    result = await s.dispatcher.deliver(*_sms())
    assert result == Delivered(f"SM{1:032d}")
    entry = await s.ledger.get("k:sms")
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, f"SM{1:032d}")


async def test_email_is_sent_and_recorded() -> None:
    """A fresh email goes to the email sender and its entry is marked SENT."""
    s = _setup()
    assert await s.dispatcher.deliver(*_email()) == Delivered("sg-1")
    assert len(s.email.sent) == 1
    assert s.sms.sent == []


async def test_suppressed_recipient_gets_nothing_and_nothing_is_claimed() -> None:
    """A suppressed address gets nothing: no provider call and no ledger entry."""
    s = _setup()
    await s.ledger.suppress(ORG, Channel.SMS, PHONE, SuppressionReason.OPTED_OUT, T0)
    assert await s.dispatcher.deliver(*_sms()) == Suppressed(SuppressionReason.OPTED_OUT)
    assert s.sms.sent == []
    assert await s.ledger.get("k:sms") is None


async def test_message_sent_before_a_suppression_still_reports_delivered() -> None:
    """A retry of a message sent before the recipient opted out is delivered earlier, not suppressed."""
    s = _setup()
    await s.dispatcher.deliver(*_sms())
    await s.ledger.suppress(ORG, Channel.SMS, PHONE, SuppressionReason.OPTED_OUT, T0)
    assert await s.dispatcher.deliver(*_sms()) == Delivered(f"SM{1:032d}", earlier=True)
    assert await s.dispatcher.deliver(*_sms("other:sms")) == Suppressed(SuppressionReason.OPTED_OUT)
    assert len(s.sms.sent) == 1


async def test_sent_entry_is_final() -> None:
    """A message already SENT is reported as delivered earlier and not sent again."""
    s = _setup()
    await s.dispatcher.deliver(*_sms())
    s.clock.advance(timedelta(hours=1))
    assert await s.dispatcher.deliver(*_sms()) == Delivered(f"SM{1:032d}", earlier=True)
    assert len(s.sms.sent) == 1


async def test_failed_entry_is_final() -> None:
    """A message the provider refused is refused again from the ledger, without a second provider call."""
    s = _setup()
    s.sms.fail_with.append(DeliveryRejected("unreachable carrier", "30003"))
    assert await s.dispatcher.deliver(*_sms()) == Undeliverable("unreachable carrier", "30003")
    result = await s.dispatcher.deliver(*_sms())
    assert isinstance(result, Undeliverable)
    assert s.sms.sent == []


async def test_claimed_entry_is_left_alone_until_settled() -> None:
    """An entry someone else is still sending is deferred until ``settle`` after it last changed."""
    s = _setup()
    claim, message = _sms()
    await s.ledger.claim(claim, T0)
    s.clock.advance(timedelta(seconds=30))
    assert await s.dispatcher.deliver(claim, message) == Deferred(T0 + SETTLE, "earlier_send_unsettled")
    assert s.sms.sent == []


async def test_fresh_claim_is_looked_at_again_soon_and_its_answer_taken() -> None:
    """A duplicate arriving while the first run is mid-send comes back after ``recheck`` and finds it SENT."""
    s = _setup()
    claim, message = _sms()
    first = await s.ledger.claim(claim, T0)
    assert first.entry is not None
    s.clock.advance(timedelta(seconds=1))
    assert await s.dispatcher.deliver(claim, message) == Deferred(T0 + RECHECK, "earlier_send_unsettled")
    await s.ledger.mark_sent(claim.key, first.entry.version, "SM-first", T0 + timedelta(seconds=2))
    s.clock.advance(RECHECK)
    assert await s.dispatcher.deliver(claim, message) == Delivered("SM-first", earlier=True)
    assert s.sms.sent == []


async def test_deferrals_for_an_unsettled_entry_are_spread_by_jitter() -> None:
    """Jobs that meet one unsettled entry at one instant are deferred to different instants within the jitter."""
    s = _setup()
    claim, message = _sms()
    await s.ledger.claim(claim, T0)
    s.clock.advance(timedelta(seconds=30))
    jitter = timedelta(seconds=5)
    dispatcher = Dispatcher(s.ledger, s.sms, s.email, s.clock, settle=SETTLE, jitter=jitter, random=Random(7))
    results = [await dispatcher.deliver(claim, message) for _ in range(20)]
    untils = [result.until for result in results if isinstance(result, Deferred)]
    assert len(untils) == 20
    assert all(T0 + SETTLE <= until <= T0 + SETTLE + jitter for until in untils)
    assert len(set(untils)) == 20


async def test_unknown_entry_is_left_alone_until_settled() -> None:
    """After an ambiguous answer an immediate retry waits until the entry has settled."""
    s = _setup()
    s.sms.accepted_but_lost = True
    with pytest.raises(DeliveryOutcomeUnknown):
        await s.dispatcher.deliver(*_sms())
    assert await s.dispatcher.deliver(*_sms()) == Deferred(T0 + SETTLE, "earlier_send_unsettled")
    assert len(s.sms.sent) == 1


async def test_settled_sms_the_provider_has_is_not_resent() -> None:
    """Once settled, an SMS the provider reports as sent is marked SENT and not sent again."""
    s = _setup()
    s.sms.accepted_but_lost = True
    with pytest.raises(DeliveryOutcomeUnknown):
        await s.dispatcher.deliver(*_sms())
    s.clock.advance(SETTLE)
    assert await s.dispatcher.deliver(*_sms()) == Delivered(f"SM{1:032d}", earlier=True)
    entry = await s.ledger.get("k:sms")
    assert entry is not None
    assert entry.state is LedgerState.SENT
    assert len(s.sms.sent) == 1


async def test_settled_sms_the_provider_never_got_is_sent_again() -> None:
    """A claim left by a sender that died before calling the provider is re-sent once reconciliation finds nothing."""
    s = _setup()
    claim, message = _sms()
    await s.ledger.claim(claim, T0)
    s.clock.advance(SETTLE)
    assert await s.dispatcher.deliver(claim, message) == Delivered(f"SM{1:032d}")
    assert len(s.sms.sent) == 1


async def test_settled_sms_whose_entry_changed_meanwhile_is_deferred() -> None:
    """When another run reclaims the entry between our look and our reclaim, this one does not send; it looks again
    after ``recheck``."""
    s = _setup(_LostReclaimLedger())
    claim, message = _sms()
    await s.ledger.claim(claim, T0)
    s.clock.advance(SETTLE)
    assert await s.dispatcher.deliver(claim, message) == Deferred(T0 + SETTLE + RECHECK, "ledger_entry_changed")
    assert s.sms.sent == []


async def test_settled_claimed_email_becomes_unknown_and_is_not_resent() -> None:
    """Email has no provider look-up: a settled claim turns UNKNOWN for an operator and nothing is sent."""
    s = _setup()
    claim, message = _email()
    await s.ledger.claim(claim, T0)
    s.clock.advance(SETTLE)
    assert await s.dispatcher.deliver(claim, message) == Unconfirmed("email_outcome_unknown")
    entry = await s.ledger.get("k:email")
    assert entry is not None
    assert entry.state is LedgerState.UNKNOWN
    s.clock.advance(SETTLE)
    assert await s.dispatcher.deliver(claim, message) == Unconfirmed("email_outcome_unknown")
    assert s.email.sent == []


async def test_rate_limited_send_releases_its_claim_and_is_deferred() -> None:
    """A rate-limited message was not accepted: its claim is released and a later run sends it."""
    s = _setup()
    retry_at = T0 + timedelta(seconds=5)
    s.sms.fail_with.append(DeliveryRateLimited(retry_at, "20429"))
    assert await s.dispatcher.deliver(*_sms()) == Deferred(retry_at, "provider_rate_limited")
    assert await s.ledger.get("k:sms") is None
    assert await s.dispatcher.deliver(*_sms()) == Delivered(f"SM{1:032d}")


@attrs.define
class _BlockedSms:
    """An SMS sender whose loop is blocked (the clock jumps ``block``) between the claim and the request, once;
    ``meanwhile`` runs during the block (another worker's turn)."""

    inner: FakeSmsSender
    clock: FakeClock
    block: timedelta
    meanwhile: Callable[[], Awaitable[object]] | None = None

    async def send(self, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
        block, self.block = self.block, timedelta(0)
        self.clock.advance(block)
        if block and self.meanwhile is not None:
            await self.meanwhile()
        return await self.inner.send(message, deadline)

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        return await self.inner.find_sent(ledger_key, since)


def _blocked(s: Setup, block: timedelta) -> tuple[_BlockedSms, Dispatcher]:
    blocked = _BlockedSms(s.sms, s.clock, block)
    return blocked, Dispatcher(s.ledger, blocked, s.email, s.clock, settle=SETTLE, jitter=NO_JITTER)


@pytest.mark.parametrize(("block", "sent"), [(SETTLE - MARGIN, 1), (SETTLE - MARGIN + timedelta(seconds=1), 0)])
async def test_the_sender_is_handed_the_claims_deadline(block: timedelta, sent: int) -> None:
    """The deadline is the claim's time plus the settle period less the margin: a request at it goes, one a second
    later does not."""
    s = _setup()
    _, dispatcher = _blocked(s, block)
    await dispatcher.deliver(*_sms())
    assert len(s.sms.sent) == sent


async def test_a_lapsed_claim_sends_nothing_gives_the_claim_back_and_is_deferred() -> None:
    """Blocked past its claim's deadline with no one else about: nothing sent, the entry released, the job deferred
    by the recheck period; the next run claims afresh and sends once."""
    s = _setup()
    _, dispatcher = _blocked(s, SETTLE)
    result = await dispatcher.deliver(*_sms())
    assert result == Deferred(T0 + SETTLE + RECHECK, "claim_lapsed")
    assert (s.sms.sent, await s.ledger.get("k:sms")) == ([], None)
    assert await dispatcher.deliver(*_sms()) == Delivered(f"SM{1:032d}")
    assert len(s.sms.sent) == 1


async def test_a_lapsed_claim_takes_the_answer_of_the_run_that_re_sent_it() -> None:
    """While this run is blocked past the settle period, another finds the claim settled, nothing at the provider,
    re-claims and sends; this run then sends nothing and reports that message (issue 11's blocked worker)."""
    s = _setup()
    blocked, dispatcher = _blocked(s, SETTLE + timedelta(seconds=1))
    blocked.meanwhile = lambda: s.dispatcher.deliver(*_sms())
    assert await dispatcher.deliver(*_sms()) == Delivered(f"SM{1:032d}", earlier=True)
    assert len(s.sms.sent) == 1
    entry = await s.ledger.get("k:sms")
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, f"SM{1:032d}")


async def test_ambiguous_answer_marks_unknown_and_raises() -> None:
    """A timeout leaves the entry UNKNOWN and raises, so the job's backoff applies."""
    s = _setup()
    s.sms.fail_with.append(DeliveryOutcomeUnknown("provider did not answer in time"))
    with pytest.raises(DeliveryOutcomeUnknown):
        await s.dispatcher.deliver(*_sms())
    entry = await s.ledger.get("k:sms")
    assert entry is not None
    assert entry.state is LedgerState.UNKNOWN


async def test_rejection_with_suppression_records_it() -> None:
    """An opt-out refusal fails the entry and suppresses the number, so later messages to it are suppressed."""
    s = _setup()
    s.sms.fail_with.append(DeliveryRejected("recipient opted out", "21610", SuppressionReason.OPTED_OUT))
    assert await s.dispatcher.deliver(*_sms()) == Undeliverable(
        "recipient opted out", "21610", SuppressionReason.OPTED_OUT
    )
    entry = await s.ledger.get("k:sms")
    assert entry is not None
    assert entry.state is LedgerState.FAILED
    assert await s.dispatcher.deliver(*_sms("other:sms")) == Suppressed(SuppressionReason.OPTED_OUT)


async def test_configuration_error_releases_the_claim_and_raises() -> None:
    """Refused credentials release the claim (nothing went out) and propagate."""
    s = _setup()
    s.email.fail_with.append(ConfigurationError("credentials refused"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        await s.dispatcher.deliver(*_email())
    assert await s.ledger.get("k:email") is None


async def test_message_must_match_its_claim() -> None:
    """A message under another key, or of the other channel, is a programming error."""
    s = _setup()
    claim, _ = _sms("a:sms")
    with pytest.raises(ValueError, match="ledger key"):
        await s.dispatcher.deliver(claim, SmsMessage("b:sms", PHONE, "hello"))
    with pytest.raises(ValueError, match="channel"):
        await s.dispatcher.deliver(claim, EmailMessage("a:sms", ADDRESS, "subject", "hello"))
    assert await s.ledger.get("a:sms") is None


async def test_a_send_the_provider_never_received_releases_its_claim() -> None:
    """A TransientError from the sender (connection refused) frees the key, so the retry sends the message."""
    s = _setup()
    s.sms.fail_with.append(TransientError("provider unreachable"))
    with pytest.raises(TransientError):
        await s.dispatcher.deliver(*_sms())
    assert await s.ledger.get("k:sms") is None
    assert isinstance(await s.dispatcher.deliver(*_sms()), Delivered)
    assert len(s.sms.sent) == 1


async def test_an_unclassified_sender_failure_counts_as_unknown() -> None:
    """A sender failing in a way it did not classify may have sent: the entry turns UNKNOWN, never released."""
    s = _setup()
    s.sms.fail_with.append(RuntimeError("bug in the sender"))
    with pytest.raises(RuntimeError):
        await s.dispatcher.deliver(*_sms())
    entry = await s.ledger.get("k:sms")
    assert entry is not None
    assert entry.state is LedgerState.UNKNOWN


async def test_racers_that_lose_the_reclaim_take_the_winners_answer() -> None:
    """Two runs find one settled CLAIMED entry; the first re-sends, the second's reclaim fails and it reports the
    first one's message instead of sending a second."""
    s = _setup()
    claim, message = _sms()
    await s.ledger.claim(claim, T0)
    s.clock.advance(SETTLE)
    stale = await s.ledger.get("k:sms")
    assert stale is not None
    assert await s.dispatcher.deliver(claim, message) == Delivered(f"SM{1:032d}")
    s.sms.provider_log.clear()  # the provider's look-up misses it, as a racer that looked before the send would
    assert await s.dispatcher._resolve_existing(stale, message, s.clock.now()) == Delivered(f"SM{1:032d}", earlier=True)
    assert len(s.sms.sent) == 1


async def test_a_stuck_unknown_sms_the_provider_holds_is_settled_to_sent() -> None:
    """A send left UNKNOWN by a job that ended (attempts spent) is marked SENT by the reconciler once settled, when
    the provider holds it; one the provider never got stays unsettled (still owed), and nothing is sent."""
    s = _setup()
    s.sms.accepted_but_lost = True
    with pytest.raises(DeliveryOutcomeUnknown):
        await s.dispatcher.deliver(*_sms("held:sms"))
    await s.ledger.claim(_sms("never:sms")[0], T0)
    feedback = InMemoryDeliveryFeedback(s.ledger)
    reconciler = UnknownSendReconciler(feedback, feedback, s.sms, s.clock, settle=timedelta(minutes=15))
    assert await reconciler.run_once() == ReconciliationReport()
    s.clock.advance(timedelta(minutes=16))
    assert await reconciler.run_once() == ReconciliationReport(settled=1, left=1)
    held, never = await s.ledger.get("held:sms"), await s.ledger.get("never:sms")
    assert held is not None
    assert never is not None
    assert (held.state, held.provider_message_id) == (LedgerState.SENT, f"SM{1:032d}")
    assert never.state is LedgerState.CLAIMED
    assert len(s.sms.sent) == 1
