"""Delivery feedback rules: keywords, status ranks, SendGrid suppressions, the consent gate in front of the
dispatcher and reconciliation of unsettled sends (in-memory fakes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.consent import ConsentGatedLedger
from domain.delivery import Delivered, Dispatcher, Suppressed
from domain.errors import SuppressionReason
from domain.feedback import (
    SENDGRID_PROGRESS,
    TWILIO_STATUSES,
    ConsentAction,
    ConsentChange,
    DeliveryProgress,
    SmsKeyword,
    email_event_suppression,
    sms_keyword,
)
from domain.messages import LedgerState, ProviderReceipt, SendClaim, SmsMessage
from domain.outcomes import Undeliverable
from domain.reconciliation import FAILED_UNCONFIRMED, UnknownSendReconciler
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.feedback import InMemoryDeliveryFeedback
from tests.support.fakes.ledger import InMemorySendLedger
from tests.support.fakes.senders import FakeEmailSender, FakeSmsSender

T0 = datetime(2026, 1, 21, 15, 0, tzinfo=UTC)
PHONE = PhoneNumber("+14155550100")
KEY = "reminder:3h:a-1:sms"
CLAIM = SendClaim(KEY, OrgId("org-1"), ContactId("c-1"), Channel.SMS, MessagePurpose.TRANSACTIONAL, PHONE)
MESSAGE = SmsMessage(KEY, PHONE, "See you at 3pm")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        *((word, SmsKeyword.STOP) for word in ("STOP", "stop", " Stop\n", "STOPALL", "Unsubscribe", "cancel", "END",
                                               "quit", "REVOKE", "optout")),
        *((word, SmsKeyword.START) for word in ("START", "yes", "Unstop")),
        *((word, SmsKeyword.HELP) for word in ("HELP", "info")),
        *((text, None) for text in ("STOP PLEASE", "please stop", "", "ok see you", "STOP.")),
    ],
)  # fmt: skip
def test_keywords_are_one_word_in_any_case(body: str, expected: SmsKeyword | None) -> None:
    """Twilio's default lists, one word, any case, surrounding spaces; anything else is no keyword."""
    assert sms_keyword(body) is expected


def test_twilio_opt_out_type_wins_over_the_default_list() -> None:
    """With Advanced Opt-Out, Twilio's OptOutType names the keyword (a custom one such as ARRET)."""
    assert (sms_keyword("ARRET", "STOP"), sms_keyword("STOP", "START")) == (SmsKeyword.STOP, SmsKeyword.START)


def test_statuses_rank_in_the_order_messages_progress() -> None:
    """queued < sent < delivered, and the three final statuses tie (the first one reported stays)."""
    ranks = {status: TWILIO_STATUSES[status].rank for status in ("queued", "sent", "delivered", "undelivered")}
    assert ranks == {"queued": 1, "sent": 2, "delivered": 3, "undelivered": 3}
    assert SENDGRID_PROGRESS["bounce"] is DeliveryProgress.UNDELIVERED


@pytest.mark.parametrize(
    ("event", "reason", "bounce_type", "expected"),
    [
        ("bounce", None, "bounce", SuppressionReason.BOUNCED),
        ("bounce", None, None, SuppressionReason.BOUNCED),
        ("bounce", None, "blocked", None),
        ("dropped", "Invalid", None, SuppressionReason.BOUNCED),
        ("dropped", "Spam Reporting Address", None, SuppressionReason.SPAM_REPORTED),
        ("dropped", "Invalid SMTPAPI header", None, None),
        ("spamreport", None, None, SuppressionReason.SPAM_REPORTED),
        ("unsubscribe", None, None, SuppressionReason.OPTED_OUT),
        ("group_unsubscribe", None, None, None),
        ("delivered", None, None, None),
    ],
)
def test_sendgrid_events_that_withdraw_an_address(
    event: str, reason: str | None, bounce_type: str | None, expected: SuppressionReason | None
) -> None:
    """Hard bounces, unusable drops, spam reports and unsubscribes withdraw the address; nothing else does."""
    assert email_event_suppression(event, reason, bounce_type) is expected


def stop(event_id: str = "SMin1") -> ConsentChange:
    return ConsentChange(
        Channel.SMS, PHONE, ConsentAction.WITHDRAWN, "twilio_inbound", event_id, T0, SuppressionReason.OPTED_OUT
    )


async def test_a_stop_between_enqueue_and_send_stops_the_send_and_start_lets_the_next_one_go() -> None:
    """Through the gated ledger the dispatcher sends nothing after a STOP (no entry written); after START it sends."""
    clock = FakeClock(T0)
    ledger, sms = InMemorySendLedger(), FakeSmsSender(clock)
    feedback = InMemoryDeliveryFeedback(ledger)
    dispatcher = Dispatcher(ConsentGatedLedger(ledger, feedback), sms, FakeEmailSender(clock), clock)
    await feedback.apply([], [stop()])
    refused = await dispatcher.deliver(CLAIM, MESSAGE)
    entry_after_stop = await ledger.get(KEY)
    await feedback.apply([], [ConsentChange(Channel.SMS, PHONE, ConsentAction.RESTORED, "twilio_inbound", "SMin2", T0)])
    sent = await dispatcher.deliver(CLAIM, MESSAGE)
    assert (refused, entry_after_stop) == (Suppressed(SuppressionReason.OPTED_OUT), None)
    assert isinstance(sent, Delivered)
    assert len(sms.sent) == 1


def reconciler_world(
    *, horizon: timedelta = timedelta(hours=24)
) -> tuple[FakeClock, InMemorySendLedger, FakeSmsSender, UnknownSendReconciler]:
    clock = FakeClock(T0)
    ledger, sms = InMemorySendLedger(), FakeSmsSender(clock=clock)
    feedback = InMemoryDeliveryFeedback(ledger)
    reconciler = UnknownSendReconciler(feedback, feedback, sms, clock, settle=timedelta(minutes=1), horizon=horizon)
    return clock, ledger, sms, reconciler


async def test_an_unknown_sms_twilio_has_is_settled_to_sent() -> None:
    """After the settle period, Twilio's look-up finds the message: the entry is SENT with its SID."""
    clock, ledger, sms, reconciler = reconciler_world()
    await ledger.claim(CLAIM, T0)
    sms.provider_log[KEY] = (T0, ProviderReceipt("SM77"))  # Twilio took it; our answer timed out
    await ledger.mark_unknown(KEY, await _version(ledger, KEY), "timeout", T0)
    clock.advance(timedelta(minutes=2))
    report = await reconciler.run_once()
    entry = await ledger.get(KEY)
    assert (report.settled, report.given_up) == (1, 0)
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, "SM77")


async def test_an_unsettled_send_is_given_up_after_the_horizon_and_never_sent_again() -> None:
    """Not at Twilio and older than the horizon: failed_unconfirmed; a later run of the job sends nothing."""
    clock, ledger, sms, reconciler = reconciler_world(horizon=timedelta(hours=1))
    await ledger.claim(CLAIM, T0)
    await ledger.mark_unknown(KEY, await _version(ledger, KEY), "timeout", T0)
    clock.advance(timedelta(minutes=30))
    early = await reconciler.run_once()
    clock.advance(timedelta(hours=1))
    late = await reconciler.run_once()
    again = await Dispatcher(ledger, sms, FakeEmailSender(clock), clock).deliver(CLAIM, MESSAGE)
    assert (early.left, early.given_up, late.given_up) == (1, 0, 1)
    assert again == Undeliverable(FAILED_UNCONFIRMED, None)
    assert sms.sent == []


async def test_an_unknown_email_waits_for_its_event_until_the_horizon() -> None:
    """Email has no look-up: left alone before the horizon, given up after it."""
    clock, ledger, _sms, reconciler = reconciler_world(horizon=timedelta(hours=1))
    email = SendClaim(
        "dunning:c-1:7:email", OrgId("org-1"), ContactId("c-1"), Channel.EMAIL, MessagePurpose.TRANSACTIONAL,
        EmailAddress("ana@example.com"),
    )  # fmt: skip
    await ledger.claim(email, T0)
    await ledger.mark_unknown(email.key, await _version(ledger, email.key), "timeout", T0)
    clock.advance(timedelta(minutes=10))
    before = await reconciler.run_once()
    clock.advance(timedelta(hours=1))
    after = await reconciler.run_once()
    assert (before.left, after.given_up) == (1, 1)


async def test_passes_page_through_many_waiting_entries() -> None:
    """With more unsettled entries than a batch, successive passes visit all of them, then start over."""
    clock, ledger, _sms, reconciler = reconciler_world(horizon=timedelta(hours=1))
    reconciler.batch = 2
    for n in range(3):
        claim = SendClaim(f"dunning:c-{n}:7:email", OrgId("org-1"), ContactId(f"c-{n}"), Channel.EMAIL,
                          MessagePurpose.TRANSACTIONAL, EmailAddress("ana@example.com"))  # fmt: skip
        await ledger.claim(claim, T0 + timedelta(seconds=n))
    clock.advance(timedelta(minutes=10))
    visited = [(await reconciler.run_once()).left for _ in range(3)]
    assert visited == [2, 1, 2]


async def _version(ledger: Any, key: str) -> int:
    """The version of ``key``'s ledger entry as read now: the compare-and-set token of its next move."""
    entry = await ledger.get(key)
    assert entry is not None
    return int(entry.version)
