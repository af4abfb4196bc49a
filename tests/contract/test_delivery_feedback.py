"""Delivery-feedback contract: forward-only progress, settling unknown sends, address-wide consent, give-up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain.consent import ConsentGatedLedger
from domain.errors import SuppressionReason
from domain.feedback import ConsentAction, ConsentChange, DeliveryProgress, DeliveryReport
from domain.messages import ClaimStatus, LedgerState
from domain.reconciliation import FAILED_UNCONFIRMED
from domain.values import Channel, EmailAddress, OrgId, PhoneNumber
from tests.contract.test_send_ledger import EMAIL, ORG, PHONE, email_claim, sms_claim
from tests.support.backends import Backend
from tests.support.builders import T0

KEY = "reminder:24h:a-1:sms"


def report(progress: DeliveryProgress, *, key: str = KEY, sid: str | None = "SM1", minutes: int = 1) -> DeliveryReport:
    return DeliveryReport(key, Channel.SMS, progress, T0 + timedelta(minutes=minutes), sid, None)


def stop(event_id: str = "SMin1", phone: PhoneNumber = PHONE, minutes: int = 0) -> ConsentChange:
    at = T0 + timedelta(minutes=minutes)
    return ConsentChange(
        Channel.SMS, phone, ConsentAction.WITHDRAWN, "twilio_inbound", event_id, at, SuppressionReason.OPTED_OUT
    )


def start(event_id: str = "SMin2", minutes: int = 1) -> ConsentChange:
    return ConsentChange(
        Channel.SMS, PHONE, ConsentAction.RESTORED, "twilio_inbound", event_id, T0 + timedelta(minutes=minutes)
    )


async def sent_entry(backend: Backend, sid: str = "SM1") -> None:
    await backend.ledger.claim(sms_claim(), T0)
    await backend.ledger.mark_sent(KEY, await _version(backend.ledger, KEY), sid, T0)


async def test_progress_moves_forward_only(backend: Backend) -> None:
    """Out of order: delivered then sent then queued leaves delivered; a later undelivered does not replace it."""
    await sent_entry(backend)
    moved = [
        (await backend.feedback.apply([report(p)], [])).reports
        for p in (
            DeliveryProgress.DELIVERED,
            DeliveryProgress.SENT,
            DeliveryProgress.ACCEPTED,
            DeliveryProgress.UNDELIVERED,
        )
    ]
    assert moved == [1, 0, 0, 0]
    assert await backend.feedback.progress(KEY) is DeliveryProgress.DELIVERED
    entry = await backend.ledger.get(KEY)
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, "SM1")


async def test_in_order_statuses_each_move_once_and_repeats_change_nothing(backend: Backend) -> None:
    """accepted, sent, delivered each move the entry; the same status again is a no-op."""
    await sent_entry(backend)
    first = [(await backend.feedback.apply([report(p)], [])).reports for p in list(DeliveryProgress)[:3]]
    again = (await backend.feedback.apply([report(DeliveryProgress.DELIVERED)], [])).reports
    assert (first, again) == ([1, 1, 1], 0)


async def test_a_batch_moves_each_entry_once_to_its_highest_status(backend: Backend) -> None:
    """One batch holding sent, delivered and a duplicate of sent for one key counts one move and ends delivered."""
    await sent_entry(backend)
    batch = [report(DeliveryProgress.SENT), report(DeliveryProgress.DELIVERED), report(DeliveryProgress.SENT)]
    applied = await backend.feedback.apply(batch, [])
    assert applied.reports == 1
    assert await backend.feedback.progress(KEY) is DeliveryProgress.DELIVERED


async def test_a_report_settles_an_unknown_send(backend: Backend) -> None:
    """An UNKNOWN entry becomes SENT with the report's message id and the report's time."""
    await backend.ledger.claim(sms_claim(), T0)
    await backend.ledger.mark_unknown(KEY, await _version(backend.ledger, KEY), "timeout", T0)
    await backend.feedback.apply([report(DeliveryProgress.DELIVERED, sid="SM9", minutes=5)], [])
    entry = await backend.ledger.get(KEY)
    assert entry is not None
    assert (entry.state, entry.provider_message_id, entry.updated_at) == (
        LedgerState.SENT,
        "SM9",
        T0 + timedelta(minutes=5),
    )


async def test_reports_for_another_message_channel_or_a_refused_send_change_nothing(backend: Backend) -> None:
    """Another message id, the wrong channel, an unknown key and a FAILED (refused) entry are all left alone."""
    await sent_entry(backend, sid="SM1")
    await backend.ledger.claim(email_claim(), T0)
    await backend.ledger.mark_failed(
        "dunning:c-1:7:email", await _version(backend.ledger, "dunning:c-1:7:email"), "refused", "400", T0
    )
    wrong_channel = DeliveryReport(KEY, Channel.EMAIL, DeliveryProgress.DELIVERED, T0, None)
    refused = DeliveryReport("dunning:c-1:7:email", Channel.EMAIL, DeliveryProgress.DELIVERED, T0, None)
    applied = await backend.feedback.apply(
        [report(DeliveryProgress.DELIVERED, sid="SM2"), wrong_channel, report(DeliveryProgress.SENT, key="nope")],
        [],
    )
    refused_applied = await backend.feedback.apply([refused], [])
    assert (applied.reports, refused_applied.reports) == (0, 0)
    assert await backend.feedback.progress(KEY) is None


async def test_stop_suppresses_the_number_for_every_org_and_the_gate_refuses_the_claim(backend: Backend) -> None:
    """After a STOP the gated ledger answers SUPPRESSED (opted_out) in any org and writes nothing."""
    applied = await backend.feedback.apply([], [stop()])
    gated = ConsentGatedLedger(backend.ledger, backend.feedback)
    results = [await gated.claim(sms_claim(org=org), T0) for org in (ORG, OrgId("org-2"))]
    assert applied.consent_changes == 1
    assert [(r.status, r.suppression) for r in results] == [(ClaimStatus.SUPPRESSED, SuppressionReason.OPTED_OUT)] * 2
    assert await backend.ledger.get(KEY) is None
    assert await backend.feedback.suppression(Channel.EMAIL, EMAIL) is None


async def test_the_same_event_twice_changes_nothing_the_second_time(backend: Backend) -> None:
    """A redelivered STOP (same event id) after a START does not withdraw consent again."""
    await backend.feedback.apply([], [stop("SMa")])
    await backend.feedback.apply([], [start("SMb")])
    again = await backend.feedback.apply([], [stop("SMa")])
    assert again.consent_changes == 0
    assert await backend.feedback.suppression(Channel.SMS, PHONE) is None


async def test_start_lifts_opt_outs_of_every_org_but_not_a_bounce(backend: Backend) -> None:
    """START removes the address-wide opt-out and a per-org opt-out learnt from a refused send; a bounced email
    address stays suppressed whatever is restored."""
    await backend.ledger.suppress(ORG, Channel.SMS, PHONE, SuppressionReason.OPTED_OUT, T0)
    bounce = ConsentChange(
        Channel.EMAIL, EmailAddress("ADA@example.com"), ConsentAction.WITHDRAWN, "sendgrid_event", "ev1", T0,
        SuppressionReason.BOUNCED,
    )  # fmt: skip
    await backend.feedback.apply([], [stop(), bounce])
    await backend.feedback.apply([], [start()])
    claim = await ConsentGatedLedger(backend.ledger, backend.feedback).claim(sms_claim(), T0)
    assert claim.status is ClaimStatus.CLAIMED
    assert await backend.feedback.suppression(Channel.EMAIL, EMAIL) is SuppressionReason.BOUNCED


async def test_a_second_withdrawal_keeps_the_first_reason(backend: Backend) -> None:
    """A spam report after a bounce keeps 'bounced'."""
    changes = [
        ConsentChange(Channel.EMAIL, EMAIL, ConsentAction.WITHDRAWN, "sendgrid_event", f"ev{n}", T0, reason)
        for n, reason in enumerate((SuppressionReason.BOUNCED, SuppressionReason.SPAM_REPORTED))
    ]
    applied = await backend.feedback.apply([], changes)
    assert applied.consent_changes == 2
    assert await backend.feedback.suppression(Channel.EMAIL, EMAIL) is SuppressionReason.BOUNCED


async def test_unsettled_lists_old_claimed_and_unknown_entries_oldest_first(backend: Backend) -> None:
    """Only CLAIMED/UNKNOWN entries changed before the bound, oldest first, up to the limit."""
    await backend.ledger.claim(sms_claim("k-new"), T0 + timedelta(minutes=10))
    await backend.ledger.claim(sms_claim("k-old"), T0)
    await backend.ledger.claim(sms_claim("k-mid"), T0 + timedelta(minutes=1))
    await backend.ledger.mark_unknown(
        "k-mid", await _version(backend.ledger, "k-mid"), "timeout", T0 + timedelta(minutes=2)
    )
    await backend.ledger.claim(sms_claim("k-sent"), T0)
    await backend.ledger.mark_sent("k-sent", await _version(backend.ledger, "k-sent"), "SM1", T0)
    found = await backend.feedback.unsettled(T0 + timedelta(minutes=5), 10)
    limited = await backend.feedback.unsettled(T0 + timedelta(minutes=5), 1)
    next_page = await backend.feedback.unsettled(T0 + timedelta(minutes=5), 1, (limited[0].updated_at, "k-old"))
    assert [e.key for e in found] == ["k-old", "k-mid"]
    assert [e.key for e in limited] == ["k-old"]
    assert [e.key for e in next_page] == ["k-mid"]


async def test_give_up_is_a_compare_and_set_on_the_entry_as_read(backend: Backend) -> None:
    """An entry changed since it was read is not given up; an unchanged one becomes failed_unconfirmed, and a late
    report still settles it."""
    await backend.ledger.claim(sms_claim(), T0)
    [read] = await backend.feedback.unsettled(T0 + timedelta(minutes=1), 10)
    await backend.ledger.mark_unknown(KEY, await _version(backend.ledger, KEY), "timeout", T0 + timedelta(seconds=30))
    stale = await backend.feedback.give_up(read, T0 + timedelta(hours=1))
    [fresh] = await backend.feedback.unsettled(T0 + timedelta(minutes=1), 10)
    given_up = await backend.feedback.give_up(fresh, T0 + timedelta(hours=1))
    entry = await backend.ledger.get(KEY)
    assert (stale, given_up) == (False, True)
    assert entry is not None
    assert (entry.state, entry.reason) == (LedgerState.FAILED, FAILED_UNCONFIRMED)
    assert (await backend.feedback.apply([report(DeliveryProgress.DELIVERED)], [])).reports == 1
    settled = await backend.ledger.get(KEY)
    assert settled is not None
    assert settled.state is LedgerState.SENT


async def test_unsettled_by_age_counts_per_channel_and_age(backend: Backend) -> None:
    """Each (channel, age) pair is present; an entry counts under every age it exceeds."""
    await backend.ledger.claim(sms_claim("k1"), T0)
    await backend.ledger.claim(sms_claim("k2"), T0 + timedelta(minutes=50))
    ages = [timedelta(minutes=5), timedelta(hours=1)]
    counts = await backend.feedback.unsettled_by_age(T0 + timedelta(minutes=70), ages)
    assert counts == {
        (Channel.SMS, ages[0]): 2,
        (Channel.SMS, ages[1]): 1,
        (Channel.EMAIL, ages[0]): 0,
        (Channel.EMAIL, ages[1]): 0,
    }


async def _version(ledger: Any, key: str) -> int:
    """The version of ``key``'s ledger entry as read now: the compare-and-set token of its next move."""
    entry = await ledger.get(key)
    assert entry is not None
    return int(entry.version)
