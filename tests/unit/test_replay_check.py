"""What a dry run says for each outcome or error of a job, mirroring what the runtime would do with it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.bullmq.dead_letter_admin import DeadLetterEntry
from adapters.dry_run import DryRunEffects, WouldQueue, WouldSend
from domain.errors import (
    ConfigurationError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    InvalidJob,
    TransientError,
)
from domain.outcomes import Deferred, Outcome, Published, Sent, Skipped, Undeliverable
from domain.values import Channel
from entrypoints.replay_check import _error_verdict, _outcome_verdict

ENTRY = DeadLetterEntry("dunning.7", "dunning", "process-dunning", "7", "", 3, 3, 0, 0, 0, 0, "org-1", {}, {})


def test_a_message_the_senders_got_is_would_send_with_its_masked_recipient() -> None:
    effects = DryRunEffects(sent=[WouldSend("sms", "+15***67", "dunning:org-1:c:7:sms")])

    verdict = _outcome_verdict(ENTRY, Sent((Channel.SMS,)), effects)

    assert (verdict.action, verdict.verdict) == ("send", "would send: sms to +15***67")


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Sent((Channel.SMS,)), ("skip", "would skip: already sent")),
        (Skipped("nothing_owed"), ("skip", "would skip: nothing_owed")),
        (Undeliverable("no_reachable_channel"), ("fail", "would fail: undeliverable: no_reachable_channel")),
        (
            Deferred(datetime(2026, 11, 30, 14, tzinfo=UTC), "send_window_closed"),
            ("defer", "would defer: send_window_closed until 2026-11-30T14:00:00+00:00"),
        ),
    ],
)
def test_each_outcome_without_a_send_has_its_verdict(outcome: Outcome, expected: tuple[str, str]) -> None:
    """``Sent`` with nothing handed to a sender means the ledger held every message: already sent."""
    verdict = _outcome_verdict(ENTRY, outcome, DryRunEffects())

    assert (verdict.action, verdict.verdict) == expected


def test_a_scan_that_would_queue_jobs_lists_them() -> None:
    effects = DryRunEffects(queued=[WouldQueue("reminders", "process-reminder", "r-1")])

    verdict = _outcome_verdict(ENTRY, Published(1), effects)

    assert (verdict.action, verdict.verdict, len(verdict.queues)) == ("queue", "would queue 1 jobs", 1)


@pytest.mark.parametrize(
    ("error", "action", "starts"),
    [
        (InvalidJob("amount", "must be above zero"), "fail", "would fail: invalid job: amount must be above zero"),
        (DeliveryRejected("invalid number", "21211"), "fail", "would fail: rejected by the provider"),
        (DeliveryRateLimited(datetime(2026, 1, 1, tzinfo=UTC)), "defer", "would defer: provider_rate_limited"),
        (ConfigurationError("credentials refused"), "stop", "would stop the worker"),
        (TransientError("database unreachable"), "retry", "would retry: TransientError"),
        (DeliveryOutcomeUnknown("timeout"), "retry", "would retry: DeliveryOutcomeUnknown"),
        (KeyError("phone"), "retry", "would retry: unexpected KeyError in the handler"),
    ],
)
def test_each_error_is_mapped_as_the_runtime_maps_it(error: Exception, action: str, starts: str) -> None:
    """An unexpected error never shows its text (it may hold PII), only its class."""
    verdict = _error_verdict(ENTRY, error)

    assert verdict.action == action
    assert verdict.verdict.startswith(starts)
    assert "phone" not in verdict.verdict
