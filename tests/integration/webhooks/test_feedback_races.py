"""Concurrent delivery reports on real Postgres: the compare-and-set keeps every entry moving forward only."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.postgres import PostgresDatabase, PostgresSendLedger
from adapters.postgres.feedback import PostgresDeliveryFeedback
from domain.feedback import DeliveryProgress, DeliveryReport
from domain.messages import LedgerState, SendClaim
from domain.values import Channel, ContactId, MessagePurpose, OrgId, PhoneNumber

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
pytestmark = pytest.mark.slow  # 10 rounds of 240 concurrent reports

ORDER = (DeliveryProgress.ACCEPTED, DeliveryProgress.SENT, DeliveryProgress.DELIVERED)


async def test_concurrent_duplicated_reports_move_each_entry_at_most_once_per_rank(db: PostgresDatabase) -> None:
    """20 UNKNOWN entries, each reported accepted, sent and delivered 4 times over, all at once from 10 connections,
    for 10 rounds: every entry ends SENT and delivered, with at most 3 moves (one per rank)."""
    ledger, feedback = PostgresSendLedger(db), PostgresDeliveryFeedback(db)
    rng = random.Random(3)
    for round_number in range(10):
        keys = [f"reminder:3h:r{round_number}-{n}:sms" for n in range(20)]
        for key in keys:
            claim = SendClaim(
                key, OrgId("org-1"), ContactId("c-1"), Channel.SMS, MessagePurpose.TRANSACTIONAL,
                PhoneNumber("+14155550123"),
            )  # fmt: skip
            await ledger.claim(claim, T0)
            await ledger.mark_unknown(key, await _version(ledger, key), "timeout", T0)
        reports = [
            DeliveryReport(key, Channel.SMS, progress, T0, f"SM-{key}") for key in keys for progress in ORDER * 4
        ]
        rng.shuffle(reports)
        applied = await asyncio.gather(*(feedback.apply([report], []) for report in reports))
        moves: dict[str, int] = {}
        for report, result in zip(reports, applied, strict=True):
            moves[report.ledger_key] = moves.get(report.ledger_key, 0) + result.reports
        states = [await ledger.get(key) for key in keys]
        assert all(1 <= count <= 3 for count in moves.values()), moves
        assert [await feedback.progress(key) for key in keys] == [DeliveryProgress.DELIVERED] * len(keys)
        assert {(s.state, s.provider_message_id == f"SM-{s.key}") for s in states if s} == {(LedgerState.SENT, True)}


async def _version(ledger: Any, key: str) -> int:
    """The version of ``key``'s ledger entry as read now: the compare-and-set token of its next move."""
    entry = await ledger.get(key)
    assert entry is not None
    return int(entry.version)
