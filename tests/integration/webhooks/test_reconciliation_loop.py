"""The webhooks program's reconciliation pass over real Postgres: an email unknown past the horizon is given up
(failed_unconfirmed), counted and gauged; a fresh one is left for its events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.clock import SystemClock
from adapters.observability.metrics import MetricsSnapshot, read_recorded, render_prometheus
from domain.messages import LedgerState, SendClaim
from domain.reconciliation import FAILED_UNCONFIRMED, UnknownSendReconciler
from domain.values import Channel, ContactId, EmailAddress, MessagePurpose, OrgId
from entrypoints.webhooks import reconcile_periodically
from tests.integration.webhooks.conftest import Webhooks
from tests.support.fakes.senders import FakeSmsSender
from tests.support.scratch import redis_prefix


def email_claim(key: str) -> SendClaim:
    return SendClaim(
        key, OrgId("org-1"), ContactId("c-1"), Channel.EMAIL, MessagePurpose.TRANSACTIONAL,
        EmailAddress("ana@example.com"),
    )  # fmt: skip


async def test_one_pass_gives_up_an_email_past_the_horizon_and_reports_it(webhooks: Webhooks) -> None:
    """Claimed 2 days ago and unknown since: failed_unconfirmed, counted as given_up; one claimed 10 minutes ago
    stays unknown and shows in the unsettled gauge (over 300 s)."""
    now = datetime.now(UTC)
    for key, at in (("dunning:old:email", now - timedelta(days=2)), ("dunning:new:email", now - timedelta(minutes=10))):
        await webhooks.ledger.claim(email_claim(key), at)
        await webhooks.ledger.mark_unknown(key, await _version(webhooks.ledger, key), "timeout", at)
    reconciler = UnknownSendReconciler(
        webhooks.feedback, webhooks.feedback, FakeSmsSender(SystemClock()), SystemClock()
    )
    stop = asyncio.Event()
    async with redis_prefix() as (client, prefix):
        webhooks.metrics.prefix = prefix
        loop = asyncio.create_task(reconcile_periodically(reconciler, webhooks.feedback, webhooks.metrics, 3600, stop))
        async with asyncio.timeout(30):  # a bound for the first pass, not a measurement
            while (entry := await webhooks.ledger.get("dunning:old:email")) and entry.state is LedgerState.UNKNOWN:  # noqa: ASYNC110  # the database signals nothing
                await asyncio.sleep(0.05)
        stop.set()
        await loop
        await webhooks.metrics.flush(client)
        text = render_prometheus(MetricsSnapshot((), None, (), await read_recorded(client, prefix), {})).decode()
    old, new = await webhooks.ledger.get("dunning:old:email"), await webhooks.ledger.get("dunning:new:email")
    assert old is not None
    assert new is not None
    assert (old.state, old.reason) == (LedgerState.FAILED, FAILED_UNCONFIRMED)
    assert new.state is LedgerState.UNKNOWN
    assert 'clientflow_reconciled_sends_total{outcome="given_up"} 1.0' in text
    assert 'clientflow_unsettled_sends{channel="email",older_than_seconds="300"} 1.0' in text


async def _version(ledger: Any, key: str) -> int:
    """The version of ``key``'s ledger entry as read now: the compare-and-set token of its next move."""
    entry = await ledger.get(key)
    assert entry is not None
    return int(entry.version)
