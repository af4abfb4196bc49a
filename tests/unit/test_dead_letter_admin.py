"""The dead-letter tooling's pure parts: reason kinds from failure reasons, filters, durations on the command line."""

from __future__ import annotations

import argparse

import pytest

from adapters.bullmq.dead_letter_admin import (
    DeadLetterEntry,
    DeadLetterFilter,
    counts_by_reason,
    entry_from_copy,
    reason_kind,
)
from entrypoints.cli_dead_letters import duration_seconds

NOW_MS = 1_800_000_000_000


@pytest.mark.parametrize(
    ("failed_reason", "kind"),
    [
        ("invalid job: appointmentId is missing", "invalid_job"),
        ("InvalidJob: invalid job: amount must be above zero", "invalid_job"),
        ("DeliveryRejected: invalid number (provider code 21211)", "delivery_rejected"),
        ("DeliveryOutcomeUnknown: provider timeout", "outcome_unknown"),
        ("TransientError: database unreachable", "transient"),
        ("unexpected KeyError in the handler (see the worker log)", "handler_bug"),
        ("job stalled more than allowable limit", "stalled"),
        ("something a Node worker wrote", "other"),
        ("", "other"),
    ],
)
def test_each_failure_reason_the_runtime_writes_has_its_kind(failed_reason: str, kind: str) -> None:
    """The runtime's and bullmq's own failure texts map to the kinds ``list --reason`` filters on."""
    assert reason_kind(failed_reason) == kind


def entry(
    copy_id: str, reason: str, failed_ago_s: float, queue: str = "dunning", org: str = "org-1"
) -> DeadLetterEntry:
    finished = NOW_MS - int(failed_ago_s * 1000)
    return DeadLetterEntry(
        copy_id, queue, "process-dunning", copy_id, reason, 1, 3, finished, finished, finished, finished, org, {}, {}
    )


def test_filters_combine_and_ages_count_from_the_failure() -> None:
    """Every criterion given must match; ``older_than`` and ``newer_than`` bound the time since the failure."""
    old = entry("a", "TransientError: x", 3 * 86400)
    new = entry("b", "TransientError: x", 60)
    other_org = entry("c", "TransientError: x", 60, org="org-2")

    def chosen(where: DeadLetterFilter) -> list[str]:
        return [e.id for e in (old, new, other_org) if where.matches(e)]

    assert chosen(DeadLetterFilter(NOW_MS, older_than_s=86400)) == ["a"]
    assert chosen(DeadLetterFilter(NOW_MS, newer_than_s=3600, org_id="org-1")) == ["b"]
    assert chosen(DeadLetterFilter(NOW_MS, reason_kind="invalid_job")) == []
    assert chosen(DeadLetterFilter(NOW_MS, queue="dunning")) == ["a", "b", "c"]


def test_counts_are_per_queue_and_reason_kind_with_a_total() -> None:
    """``counts_by_reason`` gives every queue's kinds and the sum over all queues."""
    counts = counts_by_reason(
        [
            entry("a", "TransientError: x", 1),
            entry("b", "invalid job: x", 1),
            entry("c", "invalid job: y", 1, "nurture"),
        ]
    )

    assert counts == {
        "all": {"transient": 1, "invalid_job": 2},
        "dunning": {"transient": 1, "invalid_job": 1},
        "nurture": {"invalid_job": 1},
    }


def test_a_copy_keeps_fields_it_does_not_know_as_marks() -> None:
    """A marker another part adds to the copy (e.g. a message still owed) is listed, never hidden."""
    raw = '{"sourceQueue": "dunning", "jobName": "process-dunning", "jobId": "7", "data": {"orgId": "o"}, "owed": 2}'
    found = entry_from_copy("dunning.7", raw, "1700000000000")

    assert found.marks == {"owed": 2}
    assert found.summary()["marks"] == {"owed": 2}
    assert "data" not in found.summary()


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("1.5d", 129600)])
def test_durations_read_as_operators_write_them(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


def test_a_duration_without_a_unit_is_refused_with_an_example() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="such as 30m"):
        duration_seconds("30")
