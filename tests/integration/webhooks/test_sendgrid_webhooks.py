"""SendGrid's Event Webhook through the real server and Postgres, batches signed with a test ECDSA key pair and
verified by the sendgrid library's EventWebhook helper."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.errors import SuppressionReason
from domain.feedback import DeliveryProgress
from domain.messages import LedgerState, SendClaim
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId
from tests.integration.webhooks.conftest import Webhooks
from tests.support.fakeservers.webhook_signing import SendGridKeys

KEY = "dunning:c-1:inv-1:7:email"
EMAIL = EmailAddress("jane.canary@example.org")
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
PATH = "/webhooks/sendgrid/events"


def event(kind: str, n: int, email: str = EMAIL.address, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": 1773133200 + n,
        "event": kind,
        "sg_event_id": f"ev-{kind}-{n}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "ledger_key": KEY,
        **extra,
    }


async def post(webhooks: Webhooks, body: bytes, headers: dict[str, str]) -> int:
    headers = {"Content-Type": "application/json", **headers}
    async with webhooks.http.post(webhooks.url + PATH, data=body, headers=headers) as answer:
        return answer.status


async def unknown_email(webhooks: Webhooks) -> None:
    claim = SendClaim(KEY, OrgId("org-1"), ContactId("c-1"), Channel.EMAIL, MessagePurpose.TRANSACTIONAL, EMAIL)
    await webhooks.ledger.claim(claim, T0)
    await webhooks.ledger.mark_unknown(KEY, await _version(webhooks.ledger, KEY), "timeout", T0)


async def test_a_delivered_event_settles_an_unknown_email(webhooks: Webhooks, sendgrid_keys: SendGridKeys) -> None:
    """processed then delivered: the UNKNOWN email is SENT under the X-Message-Id part of sg_message_id."""
    await unknown_email(webhooks)
    body = json.dumps([event("processed", 1), event("delivered", 2)]).encode()
    status = await post(webhooks, body, sendgrid_keys.headers(body))
    entry = await webhooks.ledger.get(KEY)
    assert status == 204
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, "14c5d75ce93")
    assert await webhooks.feedback.progress(KEY) is DeliveryProgress.DELIVERED


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([event("bounce", 1, type="bounce")], SuppressionReason.BOUNCED),
        ([event("dropped", 1, reason="Bounced Address")], SuppressionReason.BOUNCED),
        ([event("dropped", 1, reason="Invalid")], SuppressionReason.BOUNCED),
        ([event("spamreport", 1)], SuppressionReason.SPAM_REPORTED),
        ([event("unsubscribe", 1)], SuppressionReason.OPTED_OUT),
        ([event("bounce", 1, type="blocked")], None),
        ([event("group_unsubscribe", 1, asm_group_id=3)], None),
        ([event("deferred", 1), event("open", 2)], None),
    ],
    ids=["bounce", "dropped-bounced", "dropped-invalid", "spamreport", "unsubscribe", "blocked", "group", "other"],
)
async def test_events_that_withdraw_the_address_suppress_it_for_email(
    webhooks: Webhooks, sendgrid_keys: SendGridKeys, events: list[dict[str, Any]], expected: SuppressionReason | None
) -> None:
    """Suppressed with the event's reason in any case spelling; the others leave the address alone."""
    body = json.dumps(events).encode()
    assert await post(webhooks, body, sendgrid_keys.headers(body)) == 204
    assert await webhooks.feedback.suppression(Channel.EMAIL, EmailAddress("Jane.Canary@Example.org")) is expected


async def test_a_redelivered_batch_changes_nothing(webhooks: Webhooks, sendgrid_keys: SendGridKeys) -> None:
    """The same batch twice records one consent change and one progress move."""
    await unknown_email(webhooks)
    body = json.dumps([event("delivered", 1), event("spamreport", 2)]).encode()
    for _ in range(2):
        assert await post(webhooks, body, sendgrid_keys.headers(body)) == 204
    assert await webhooks.db.fetchval("select count(*) from consent_changes") == 1
    assert await webhooks.feedback.progress(KEY) is DeliveryProgress.DELIVERED


def _refused_headers(keys: SendGridKeys, body: bytes) -> dict[str, dict[str, str]]:
    signed = keys.headers(body)
    return {
        "unsigned": {},
        "other-key": SendGridKeys().headers(body),
        "other-body": keys.headers(body + b" "),
        "stale": keys.headers(body, timestamp=time.time() - 3600),
        "future": keys.headers(body, timestamp=time.time() + 3600),
        "garbage-signature": {**signed, "X-Twilio-Email-Event-Webhook-Signature": "%%%"},
        "no-timestamp": {"X-Twilio-Email-Event-Webhook-Signature": signed["X-Twilio-Email-Event-Webhook-Signature"]},
    }


@pytest.mark.parametrize(
    "case", ["unsigned", "other-key", "other-body", "stale", "future", "garbage-signature", "no-timestamp"]
)
async def test_unauthentic_or_stale_batches_are_refused_and_change_nothing(
    webhooks: Webhooks, sendgrid_keys: SendGridKeys, case: str
) -> None:
    """403; the unknown email stays UNKNOWN and the address is not suppressed."""
    await unknown_email(webhooks)
    body = json.dumps([event("delivered", 1), event("bounce", 2)]).encode()
    status = await post(webhooks, body, _refused_headers(sendgrid_keys, body)[case])
    entry = await webhooks.ledger.get(KEY)
    assert status == 403
    assert entry is not None
    assert entry.state is LedgerState.UNKNOWN
    assert await webhooks.feedback.suppression(Channel.EMAIL, EMAIL) is None


async def test_a_body_that_is_not_a_json_array_is_a_400(webhooks: Webhooks, sendgrid_keys: SendGridKeys) -> None:
    """Signed but not an array of events: 400, nothing written."""
    body = b'{"event": "delivered"}'
    assert await post(webhooks, body, sendgrid_keys.headers(body)) == 400


async def test_unusable_entries_do_not_cost_the_rest_of_the_batch(
    webhooks: Webhooks, sendgrid_keys: SendGridKeys
) -> None:
    """A non-object entry and a bounce without an address are skipped; the delivered event still applies."""
    await unknown_email(webhooks)
    body = json.dumps(["noise", {"event": "bounce", "sg_event_id": "x"}, event("delivered", 3)]).encode()
    assert await post(webhooks, body, sendgrid_keys.headers(body)) == 204
    assert await webhooks.feedback.progress(KEY) is DeliveryProgress.DELIVERED


async def _version(ledger: Any, key: str) -> int:
    """The version of ``key``'s ledger entry as read now: the compare-and-set token of its next move."""
    entry = await ledger.get(key)
    assert entry is not None
    return int(entry.version)
