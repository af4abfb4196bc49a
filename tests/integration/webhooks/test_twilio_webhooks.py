"""Twilio webhooks through the real server and Postgres, requests signed by the twilio library's validator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from yarl import URL

from adapters.observability.metrics import MetricsSnapshot, read_recorded, render_prometheus
from domain.errors import SuppressionReason
from domain.feedback import DeliveryProgress
from domain.messages import LedgerState, SendClaim
from domain.values import Channel, ContactId, MessagePurpose, OrgId, PhoneNumber
from tests.integration.webhooks.conftest import MAX_BODY_BYTES, Webhooks
from tests.support.fakeservers.webhook_signing import twilio_headers
from tests.support.scratch import redis_prefix

PHONE = PhoneNumber("+14155550123")
KEY = "reminder:24h:a-1:2026-03-10T12:00:00.000Z:sms"
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
EMPTY_RESPONSE = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def status_path(key: str = KEY) -> str:
    return "/webhooks/twilio/status?" + urlencode({"ledger_key": key})


async def post_status(
    webhooks: Webhooks, status: str, *, sid: str = "SM1", headers: dict[str, str] | None = None
) -> int:
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1", "To": PHONE.e164}
    signed = twilio_headers(status_path(), form) if headers is None else headers
    # encoded=True: sent byte for byte as signed, as Twilio calls the configured URL
    async with webhooks.http.post(URL(webhooks.url + status_path(), encoded=True), data=form, headers=signed) as answer:
        return answer.status


async def post_inbound(webhooks: Webhooks, body: str, sid: str) -> tuple[int, str]:
    form = {"MessageSid": sid, "From": PHONE.e164, "To": "+15005550006", "Body": body, "AccountSid": "AC1"}
    path = "/webhooks/twilio/inbound"
    async with webhooks.http.post(webhooks.url + path, data=form, headers=twilio_headers(path, form)) as answer:
        return answer.status, await answer.text()


async def claimed(webhooks: Webhooks, state: LedgerState = LedgerState.UNKNOWN) -> None:
    claim = SendClaim(KEY, OrgId("org-1"), ContactId("c-1"), Channel.SMS, MessagePurpose.TRANSACTIONAL, PHONE)
    await webhooks.ledger.claim(claim, T0)
    if state is LedgerState.UNKNOWN:
        await webhooks.ledger.mark_unknown(KEY, await _version(webhooks.ledger, KEY), "timeout", T0)
    elif state is LedgerState.SENT:
        await webhooks.ledger.mark_sent(KEY, await _version(webhooks.ledger, KEY), "SM1", T0)


async def test_a_delivered_callback_settles_an_unknown_send(webhooks: Webhooks) -> None:
    """An UNKNOWN entry becomes SENT with Twilio's SID, its progress delivered; the answer is 204."""
    await claimed(webhooks)
    status = await post_status(webhooks, "delivered", sid="SM42")
    entry = await webhooks.ledger.get(KEY)
    assert status == 204
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, "SM42")
    assert await webhooks.feedback.progress(KEY) is DeliveryProgress.DELIVERED


async def test_statuses_out_of_order_and_repeated_end_at_the_furthest(webhooks: Webhooks) -> None:
    """delivered, then sent, queued and delivered again: the progress stays delivered."""
    await claimed(webhooks, LedgerState.SENT)
    for status in ("delivered", "sent", "queued", "delivered", "undelivered"):
        assert await post_status(webhooks, status) == 204
    assert await webhooks.feedback.progress(KEY) is DeliveryProgress.DELIVERED


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        twilio_headers(status_path(), {"MessageSid": "SM1", "MessageStatus": "failed"}),  # another form
        twilio_headers(status_path(), {"MessageSid": "SM1", "MessageStatus": "delivered"}, token="0" * 32),
    ],
    ids=["unsigned", "garbage", "other-parameters", "other-token"],
)
async def test_unauthentic_callbacks_are_refused_and_change_nothing(
    webhooks: Webhooks, headers: dict[str, str]
) -> None:
    """403 and the entry stays UNKNOWN without progress."""
    await claimed(webhooks)
    status = await post_status(webhooks, "delivered", headers=headers)
    entry = await webhooks.ledger.get(KEY)
    assert status == 403
    assert entry is not None
    assert entry.state is LedgerState.UNKNOWN
    assert await webhooks.feedback.progress(KEY) is None


async def test_an_oversized_request_is_refused_with_413(webhooks: Webhooks) -> None:
    """A body over the limit is refused before it is read."""
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "Body": "x" * (MAX_BODY_BYTES + 1)}
    async with webhooks.http.post(
        URL(webhooks.url + status_path(), encoded=True), data=form, headers=twilio_headers(status_path(), form)
    ) as answer:
        assert answer.status == 413


@pytest.mark.parametrize("body", ["STOP", "  stop ", "Stopall", "unsubscribe", "CANCEL", "end", "Quit", "REVOKE"])
async def test_stop_and_its_synonyms_withdraw_sms_consent_at_once(webhooks: Webhooks, body: str) -> None:
    """The number is suppressed for SMS before the answer (empty TwiML) returns."""
    status, text = await post_inbound(webhooks, body, "SMin1")
    assert (status, text) == (200, EMPTY_RESPONSE)
    assert await webhooks.feedback.suppression(Channel.SMS, PHONE) is SuppressionReason.OPTED_OUT


async def test_start_restores_and_the_change_history_keeps_time_and_source(webhooks: Webhooks) -> None:
    """STOP then UNSTOP: no suppression left; consent_changes holds both, in order, with source and time."""
    await post_inbound(webhooks, "STOP", "SMin1")
    await post_inbound(webhooks, "unstop", "SMin2")
    rows = await webhooks.db.fetch("select action, source, changed_at from consent_changes order by id")
    assert await webhooks.feedback.suppression(Channel.SMS, PHONE) is None
    assert [(r["action"], r["source"]) for r in rows] == [
        ("withdrawn", "twilio_inbound"),
        ("restored", "twilio_inbound"),
    ]
    assert rows[0]["changed_at"] <= rows[1]["changed_at"]


@pytest.mark.parametrize("body", ["HELP", "info", "STOP PLEASE", "see you tomorrow"])
async def test_help_and_other_messages_change_nothing(webhooks: Webhooks, body: str) -> None:
    """Answered with empty TwiML, no suppression, no change recorded."""
    status, text = await post_inbound(webhooks, body, "SMin1")
    assert (status, text) == (200, EMPTY_RESPONSE)
    assert await webhooks.db.fetchval("select count(*) from consent_changes") == 0


async def test_a_redelivered_stop_after_start_changes_nothing(webhooks: Webhooks) -> None:
    """The same MessageSid twice counts once: STOP, START, then the first STOP again leaves consent restored."""
    await post_inbound(webhooks, "STOP", "SMin1")
    await post_inbound(webhooks, "START", "SMin2")
    await post_inbound(webhooks, "STOP", "SMin1")
    assert await webhooks.feedback.suppression(Channel.SMS, PHONE) is None
    assert await webhooks.db.fetchval("select count(*) from consent_changes") == 2


async def test_events_and_refusals_are_counted_in_the_metrics(webhooks: Webhooks) -> None:
    """After a delivered callback, a repeat, a STOP and an unsigned request, the Prometheus text counts each; the
    unsettled-sends gauge shows its latest value."""
    await claimed(webhooks)
    await post_status(webhooks, "delivered")
    await post_status(webhooks, "delivered")
    await post_inbound(webhooks, "STOP", "SMin1")
    await post_status(webhooks, "delivered", headers={})
    async with redis_prefix() as (client, prefix):
        webhooks.metrics.prefix = prefix
        webhooks.metrics.unsettled_sends("sms", 300, 2)
        await webhooks.metrics.flush(client)
        webhooks.metrics.unsettled_sends("sms", 300, 1)  # a gauge: the latest value replaces the last
        await webhooks.metrics.flush(client)
        recorded = await read_recorded(client, prefix)
    text = render_prometheus(MetricsSnapshot((), None, (), recorded, {})).decode()
    assert 'clientflow_webhook_events_total{kind="delivered",outcome="applied",provider="twilio"} 1.0' in text
    assert 'clientflow_webhook_events_total{kind="delivered",outcome="unchanged",provider="twilio"} 1.0' in text
    assert 'clientflow_webhook_events_total{kind="inbound_withdrawn",outcome="applied",provider="twilio"} 1.0' in text
    assert 'clientflow_webhook_refusals_total{provider="twilio",reason="unsigned"} 1.0' in text
    assert 'clientflow_unsettled_sends{channel="sms",older_than_seconds="300"} 1.0' in text


async def _version(ledger: Any, key: str) -> int:
    """The version of ``key``'s ledger entry as read now: the compare-and-set token of its next move."""
    entry = await ledger.get(key)
    assert entry is not None
    return int(entry.version)
