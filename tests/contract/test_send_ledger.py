"""SendLedger contract: claim once, suppressions checked with the claim, the state machine of the port."""

from __future__ import annotations

from datetime import timedelta

from domain.errors import SuppressionReason
from domain.messages import ClaimStatus, LedgerState, SendClaim
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber
from tests.contract.backends import Backend
from tests.contract.data import T0

ORG = OrgId("org-1")
PHONE = PhoneNumber("+14155550100")
EMAIL = EmailAddress("Ada@Example.com")


def sms_claim(
    key: str = "reminder:24h:a-1:sms",
    *,
    contact: str = "c-1",
    purpose: MessagePurpose = MessagePurpose.TRANSACTIONAL,
    org: OrgId = ORG,
) -> SendClaim:
    return SendClaim(key, org, ContactId(contact), Channel.SMS, purpose, PHONE)


def email_claim(key: str = "dunning:c-1:7:email") -> SendClaim:
    return SendClaim(key, ORG, ContactId("c-1"), Channel.EMAIL, MessagePurpose.TRANSACTIONAL, EMAIL)


async def test_first_claim_wins_and_the_second_sees_the_entry(backend: Backend) -> None:
    """A new key is CLAIMED; claiming it again is TAKEN with the existing CLAIMED entry."""
    first = await backend.ledger.claim(sms_claim(), T0)
    second = await backend.ledger.claim(sms_claim(), T0 + timedelta(minutes=1))
    assert first.status is ClaimStatus.CLAIMED
    assert second.status is ClaimStatus.TAKEN
    assert second.existing is not None
    assert (second.existing.key, second.existing.channel, second.existing.state) == (
        "reminder:24h:a-1:sms",
        Channel.SMS,
        LedgerState.CLAIMED,
    )
    assert second.existing.claimed_at == T0


async def test_get_returns_the_entry_or_none(backend: Backend) -> None:
    """get() finds a claimed key and returns None for an unknown one."""
    await backend.ledger.claim(sms_claim(), T0)
    entry = await backend.ledger.get("reminder:24h:a-1:sms")
    assert entry is not None
    assert (entry.state, entry.claimed_at, entry.updated_at, entry.provider_message_id) == (
        LedgerState.CLAIMED,
        T0,
        T0,
        None,
    )
    assert await backend.ledger.get("nope") is None


async def test_suppressed_recipient_claims_nothing(backend: Backend) -> None:
    """A suppressed address on that channel in that org yields SUPPRESSED with its reason, and writes no entry."""
    await backend.ledger.suppress(ORG, Channel.SMS, PHONE, SuppressionReason.OPTED_OUT, T0)
    result = await backend.ledger.claim(sms_claim(), T0)
    assert result.status is ClaimStatus.SUPPRESSED
    assert result.suppression is SuppressionReason.OPTED_OUT
    assert await backend.ledger.get("reminder:24h:a-1:sms") is None


async def test_suppression_is_per_org_and_channel(backend: Backend) -> None:
    """Suppressing the phone for SMS in one org neither blocks another org nor the email channel."""
    await backend.ledger.suppress(ORG, Channel.SMS, PHONE, SuppressionReason.INVALID_NUMBER, T0)
    other_org = await backend.ledger.claim(sms_claim("k-other-org", org=OrgId("org-2")), T0)
    email = await backend.ledger.claim(email_claim(), T0)
    assert other_org.status is ClaimStatus.CLAIMED
    assert email.status is ClaimStatus.CLAIMED


async def test_email_suppression_ignores_case(backend: Backend) -> None:
    """An address suppressed in one spelling blocks the same address in another case."""
    await backend.ledger.suppress(ORG, Channel.EMAIL, EmailAddress("ada@example.com"), SuppressionReason.BOUNCED, T0)
    result = await backend.ledger.claim(email_claim(), T0)
    assert (result.status, result.suppression) == (ClaimStatus.SUPPRESSED, SuppressionReason.BOUNCED)


async def test_suppress_is_idempotent_and_keeps_the_first_reason(backend: Backend) -> None:
    """Suppressing twice is no error and the first reason stays."""
    await backend.ledger.suppress(ORG, Channel.SMS, PHONE, SuppressionReason.OPTED_OUT, T0)
    await backend.ledger.suppress(ORG, Channel.SMS, PHONE, SuppressionReason.INVALID_NUMBER, T0)
    result = await backend.ledger.claim(sms_claim(), T0)
    assert result.suppression is SuppressionReason.OPTED_OUT


async def test_mark_sent_from_claimed_records_the_provider_id(backend: Backend) -> None:
    """CLAIMED -> SENT keeps the provider's id and the time of the move."""
    await backend.ledger.claim(sms_claim(), T0)
    await backend.ledger.mark_sent("reminder:24h:a-1:sms", "SM123", T0 + timedelta(seconds=2))
    entry = await backend.ledger.get("reminder:24h:a-1:sms")
    assert entry is not None
    assert (entry.state, entry.provider_message_id, entry.updated_at) == (
        LedgerState.SENT,
        "SM123",
        T0 + timedelta(seconds=2),
    )


async def test_mark_sent_from_unknown(backend: Backend) -> None:
    """UNKNOWN -> SENT once reconciliation finds the provider's record."""
    await backend.ledger.claim(sms_claim(), T0)
    await backend.ledger.mark_unknown("reminder:24h:a-1:sms", "timeout", T0)
    await backend.ledger.mark_sent("reminder:24h:a-1:sms", "SM9", T0)
    entry = await backend.ledger.get("reminder:24h:a-1:sms")
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, "SM9")


async def test_failed_is_final(backend: Backend) -> None:
    """mark_failed records reason and code; a later mark_sent or mark_unknown changes nothing."""
    await backend.ledger.claim(sms_claim(), T0)
    await backend.ledger.mark_failed("reminder:24h:a-1:sms", "invalid number", "21211", T0)
    await backend.ledger.mark_sent("reminder:24h:a-1:sms", "SM1", T0)
    await backend.ledger.mark_unknown("reminder:24h:a-1:sms", "timeout", T0)
    entry = await backend.ledger.get("reminder:24h:a-1:sms")
    assert entry is not None
    assert (entry.state, entry.reason, entry.provider_message_id) == (
        LedgerState.FAILED,
        "invalid number (21211)",
        None,
    )


async def test_mark_unknown_only_leaves_claimed(backend: Backend) -> None:
    """CLAIMED -> UNKNOWN with the reason; a SENT entry stays SENT."""
    await backend.ledger.claim(sms_claim("k1"), T0)
    await backend.ledger.claim(sms_claim("k2"), T0)
    await backend.ledger.mark_unknown("k1", "provider 503", T0)
    await backend.ledger.mark_sent("k2", "SM2", T0)
    await backend.ledger.mark_unknown("k2", "late timeout", T0)
    k1, k2 = await backend.ledger.get("k1"), await backend.ledger.get("k2")
    assert k1 is not None
    assert k2 is not None
    assert (k1.state, k1.reason) == (LedgerState.UNKNOWN, "provider 503")
    assert k2.state is LedgerState.SENT


async def test_reclaim_moves_unknown_back_to_claimed_only(backend: Backend) -> None:
    """reclaim() is True for UNKNOWN (with a new claim time) and False for SENT or a missing key."""
    await backend.ledger.claim(sms_claim("k1"), T0)
    await backend.ledger.mark_unknown("k1", "timeout", T0)
    await backend.ledger.claim(sms_claim("k2"), T0)
    await backend.ledger.mark_sent("k2", "SM2", T0)
    later = T0 + timedelta(hours=1)
    assert await backend.ledger.reclaim("k1", later) is True
    assert await backend.ledger.reclaim("k2", later) is False
    assert await backend.ledger.reclaim("missing", later) is False
    k1 = await backend.ledger.get("k1")
    assert k1 is not None
    assert (k1.state, k1.claimed_at) == (LedgerState.CLAIMED, later)


async def test_release_deletes_only_claimed_entries(backend: Backend) -> None:
    """A released CLAIMED key can be claimed again; a SENT entry is not released."""
    await backend.ledger.claim(sms_claim("k1"), T0)
    await backend.ledger.claim(sms_claim("k2"), T0)
    await backend.ledger.mark_sent("k2", "SM2", T0)
    await backend.ledger.release("k1")
    await backend.ledger.release("k2")
    assert await backend.ledger.get("k1") is None
    assert (await backend.ledger.claim(sms_claim("k1"), T0)).status is ClaimStatus.CLAIMED
    assert (await backend.ledger.claim(sms_claim("k2"), T0)).status is ClaimStatus.TAKEN


async def test_count_sent_since_counts_what_may_have_gone_out(backend: Backend) -> None:
    """CLAIMED, SENT and UNKNOWN count; FAILED, other purposes, other contacts and older claims do not."""
    ledger = backend.ledger
    marketing = MessagePurpose.MARKETING
    await ledger.claim(sms_claim("m-claimed", purpose=marketing), T0)
    await ledger.claim(sms_claim("m-sent", purpose=marketing), T0)
    await ledger.mark_sent("m-sent", "SM1", T0)
    await ledger.claim(sms_claim("m-unknown", purpose=marketing), T0)
    await ledger.mark_unknown("m-unknown", "timeout", T0)
    await ledger.claim(sms_claim("m-failed", purpose=marketing), T0)
    await ledger.mark_failed("m-failed", "rejected", None, T0)
    await ledger.claim(sms_claim("m-old", purpose=marketing), T0 - timedelta(days=2))
    await ledger.claim(sms_claim("m-other", purpose=marketing, contact="c-2"), T0)
    await ledger.claim(sms_claim("t-sent"), T0)
    since = T0 - timedelta(hours=24)
    assert await ledger.count_sent_since(ORG, ContactId("c-1"), marketing, since) == 3
    assert await ledger.count_sent_since(ORG, ContactId("c-1"), marketing, T0) == 3
    assert await ledger.count_sent_since(ORG, ContactId("c-1"), marketing, T0 + timedelta(seconds=1)) == 0


async def test_claim_times_since_lists_what_count_sent_since_counts(backend: Backend) -> None:
    """The claim times of exactly the entries count_sent_since counts, oldest first."""
    ledger = backend.ledger
    marketing = MessagePurpose.MARKETING
    await ledger.claim(sms_claim("m-late", purpose=marketing), T0 + timedelta(hours=2))
    await ledger.claim(sms_claim("m-early", purpose=marketing), T0)
    await ledger.claim(sms_claim("m-failed", purpose=marketing), T0 + timedelta(hours=1))
    await ledger.mark_failed("m-failed", "rejected", None, T0)
    await ledger.claim(sms_claim("m-old", purpose=marketing), T0 - timedelta(days=2))
    await ledger.claim(sms_claim("t-sent"), T0)
    since = T0 - timedelta(hours=24)
    times = await ledger.claim_times_since(ORG, ContactId("c-1"), marketing, since)
    assert list(times) == [T0, T0 + timedelta(hours=2)]
    assert len(times) == await ledger.count_sent_since(ORG, ContactId("c-1"), marketing, since)
