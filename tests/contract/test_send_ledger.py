"""SendLedger contract: claim once, suppressions checked with the claim, the state machine of the port."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.errors import SuppressionReason
from domain.messages import ClaimStatus, LedgerState, SendClaim
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId, PhoneNumber
from tests.support.backends import Backend
from tests.support.builders import T0

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


async def claimed(backend: Backend, key: str, at: datetime = T0) -> int:
    """Claim ``key`` (SMS) and return the version of the new entry."""
    result = await backend.ledger.claim(sms_claim(key), at)
    assert result.status is ClaimStatus.CLAIMED
    assert result.entry is not None
    return result.entry.version


async def version_of(backend: Backend, key: str) -> int:
    entry = await backend.ledger.get(key)
    assert entry is not None
    return entry.version


def email_claim(key: str = "dunning:c-1:7:email") -> SendClaim:
    return SendClaim(key, ORG, ContactId("c-1"), Channel.EMAIL, MessagePurpose.TRANSACTIONAL, EMAIL)


async def test_first_claim_wins_and_the_second_sees_the_entry(backend: Backend) -> None:
    """A new key is CLAIMED with its entry; claiming it again is TAKEN with that same entry."""
    first = await backend.ledger.claim(sms_claim(), T0)
    second = await backend.ledger.claim(sms_claim(), T0 + timedelta(minutes=1))
    assert first.status is ClaimStatus.CLAIMED
    assert second.status is ClaimStatus.TAKEN
    assert second.entry is not None
    assert (second.entry.key, second.entry.channel, second.entry.state) == (
        "reminder:24h:a-1:sms",
        Channel.SMS,
        LedgerState.CLAIMED,
    )
    assert second.entry.claimed_at == T0
    assert first.entry == second.entry


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
    version = await claimed(backend, "k1")
    assert await backend.ledger.mark_sent("k1", version, "SM123", T0 + timedelta(seconds=2)) is True
    entry = await backend.ledger.get("k1")
    assert entry is not None
    assert (entry.state, entry.provider_message_id, entry.updated_at) == (
        LedgerState.SENT,
        "SM123",
        T0 + timedelta(seconds=2),
    )


async def test_mark_sent_from_unknown(backend: Backend) -> None:
    """UNKNOWN -> SENT once reconciliation finds the provider's record."""
    version = await claimed(backend, "k1")
    assert await backend.ledger.mark_unknown("k1", version, "timeout", T0) is True
    assert await backend.ledger.mark_sent("k1", await version_of(backend, "k1"), "SM9", T0) is True
    entry = await backend.ledger.get("k1")
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, "SM9")


async def test_failed_is_final(backend: Backend) -> None:
    """mark_failed records reason and code; a later mark_sent, mark_unknown, reclaim or release changes nothing."""
    await claimed(backend, "k1")
    assert await backend.ledger.mark_failed("k1", await version_of(backend, "k1"), "invalid number", "21211", T0)
    version = await version_of(backend, "k1")
    assert await backend.ledger.mark_sent("k1", version, "SM1", T0) is False
    assert await backend.ledger.mark_unknown("k1", version, "timeout", T0) is False
    assert await backend.ledger.reclaim("k1", version, T0) is None
    assert await backend.ledger.release("k1", version) is False
    entry = await backend.ledger.get("k1")
    assert entry is not None
    assert (entry.state, entry.reason, entry.provider_message_id) == (
        LedgerState.FAILED,
        "invalid number (21211)",
        None,
    )


async def test_mark_unknown_only_leaves_claimed(backend: Backend) -> None:
    """CLAIMED -> UNKNOWN with the reason; a SENT entry stays SENT."""
    v1 = await claimed(backend, "k1")
    v2 = await claimed(backend, "k2")
    assert await backend.ledger.mark_unknown("k1", v1, "provider 503", T0) is True
    assert await backend.ledger.mark_sent("k2", v2, "SM2", T0) is True
    assert await backend.ledger.mark_unknown("k2", await version_of(backend, "k2"), "late timeout", T0) is False
    k1, k2 = await backend.ledger.get("k1"), await backend.ledger.get("k2")
    assert k1 is not None
    assert k2 is not None
    assert (k1.state, k1.reason) == (LedgerState.UNKNOWN, "provider 503")
    assert k2.state is LedgerState.SENT


async def test_reclaim_moves_unsettled_entries_back_to_claimed_only(backend: Backend) -> None:
    """reclaim() returns the new CLAIMED entry for UNKNOWN or CLAIMED, and None for SENT or a missing key."""
    await claimed(backend, "k1")
    await backend.ledger.mark_unknown("k1", await version_of(backend, "k1"), "timeout", T0)
    await backend.ledger.mark_sent("k2", await claimed(backend, "k2"), "SM2", T0)
    v3 = await claimed(backend, "k3")
    later = T0 + timedelta(hours=1)
    k1 = await backend.ledger.reclaim("k1", await version_of(backend, "k1"), later)
    assert k1 is not None
    assert (k1.state, k1.claimed_at, k1.updated_at) == (LedgerState.CLAIMED, later, later)
    assert k1 == await backend.ledger.get("k1")
    k3 = await backend.ledger.reclaim("k3", v3, later)
    assert k3 is not None
    assert k3.state is LedgerState.CLAIMED
    assert await backend.ledger.reclaim("k2", await version_of(backend, "k2"), later) is None
    assert await backend.ledger.reclaim("missing", 1, later) is None


async def test_release_deletes_only_claimed_entries(backend: Backend) -> None:
    """A released CLAIMED key can be claimed again; a SENT entry is not released."""
    v1 = await claimed(backend, "k1")
    await backend.ledger.mark_sent("k2", await claimed(backend, "k2"), "SM2", T0)
    assert await backend.ledger.release("k1", v1) is True
    assert await backend.ledger.release("k2", await version_of(backend, "k2")) is False
    assert await backend.ledger.get("k1") is None
    assert (await backend.ledger.claim(sms_claim("k1"), T0)).status is ClaimStatus.CLAIMED
    assert (await backend.ledger.claim(sms_claim("k2"), T0)).status is ClaimStatus.TAKEN


async def test_every_move_changes_the_version(backend: Backend) -> None:
    """Each transition gives the entry a version it never had: claim, unknown, reclaim, sent."""
    seen = [await claimed(backend, "k1")]
    await backend.ledger.mark_unknown("k1", seen[-1], "timeout", T0)
    seen.append(await version_of(backend, "k1"))
    reclaimed = await backend.ledger.reclaim("k1", seen[-1], T0)
    assert reclaimed is not None
    seen.append(reclaimed.version)
    await backend.ledger.mark_sent("k1", seen[-1], "SM1", T0)
    seen.append(await version_of(backend, "k1"))
    assert len(set(seen)) == 4


async def test_a_move_from_a_stale_version_changes_nothing(backend: Backend) -> None:
    """Every transition from a version the entry no longer has is refused (False/None) and leaves it as it is."""
    stale = await claimed(backend, "k1")
    reclaimed = await backend.ledger.reclaim("k1", stale, T0 + timedelta(minutes=1))
    assert reclaimed is not None
    assert await backend.ledger.reclaim("k1", stale, T0 + timedelta(minutes=2)) is None
    assert await backend.ledger.mark_sent("k1", stale, "SM-stale", T0) is False
    assert await backend.ledger.mark_failed("k1", stale, "refused", None, T0) is False
    assert await backend.ledger.mark_unknown("k1", stale, "timeout", T0) is False
    assert await backend.ledger.release("k1", stale) is False
    assert await backend.ledger.get("k1") == reclaimed


async def test_a_key_released_and_claimed_again_never_repeats_a_version(backend: Backend) -> None:
    """A reader holding the version of a released entry cannot move the entry claimed after it."""
    old = await claimed(backend, "k1")
    assert await backend.ledger.release("k1", old) is True
    new = await claimed(backend, "k1")
    assert new != old
    assert await backend.ledger.reclaim("k1", old, T0) is None
    assert await backend.ledger.mark_sent("k1", old, "SM-old", T0) is False
    assert await version_of(backend, "k1") == new


async def test_count_sent_since_counts_what_may_have_gone_out(backend: Backend) -> None:
    """CLAIMED, SENT and UNKNOWN count; FAILED, other purposes, other contacts and older claims do not."""
    ledger = backend.ledger
    marketing = MessagePurpose.MARKETING
    await ledger.claim(sms_claim("m-claimed", purpose=marketing), T0)
    await ledger.claim(sms_claim("m-sent", purpose=marketing), T0)
    await ledger.mark_sent("m-sent", await version_of(backend, "m-sent"), "SM1", T0)
    await ledger.claim(sms_claim("m-unknown", purpose=marketing), T0)
    await ledger.mark_unknown("m-unknown", await version_of(backend, "m-unknown"), "timeout", T0)
    await ledger.claim(sms_claim("m-failed", purpose=marketing), T0)
    await ledger.mark_failed("m-failed", await version_of(backend, "m-failed"), "rejected", None, T0)
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
    await ledger.mark_failed("m-failed", await version_of(backend, "m-failed"), "rejected", None, T0)
    await ledger.claim(sms_claim("m-old", purpose=marketing), T0 - timedelta(days=2))
    await ledger.claim(sms_claim("t-sent"), T0)
    since = T0 - timedelta(hours=24)
    times = await ledger.claim_times_since(ORG, ContactId("c-1"), marketing, since)
    assert list(times) == [T0, T0 + timedelta(hours=2)]
    assert len(times) == await ledger.count_sent_since(ORG, ContactId("c-1"), marketing, since)


async def test_unsettled_before_lists_old_claimed_and_unknown_entries_oldest_first(backend: Backend) -> None:
    """CLAIMED and UNKNOWN entries last changed before the instant, oldest first, up to the limit; not SENT,
    FAILED or newer ones."""
    await claimed(backend, "old-claimed", T0 - timedelta(hours=2))
    old_unknown = await claimed(backend, "old-unknown", T0 - timedelta(hours=3))
    await backend.ledger.mark_unknown("old-unknown", old_unknown, "timeout", T0 - timedelta(hours=1))
    await backend.ledger.mark_sent("old-sent", await claimed(backend, "old-sent", T0 - timedelta(hours=3)), "SM", T0)
    await claimed(backend, "new-claimed", T0)
    found = await backend.ledger.unsettled_before(T0 - timedelta(minutes=15), 10)
    assert [entry.key for entry in found] == ["old-claimed", "old-unknown"]
    assert [entry.key for entry in await backend.ledger.unsettled_before(T0, 1)] == ["old-claimed"]
