"""The BullMQ adapter's pure checks: option dicts, return-value conversion, version markers, worker settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.keys import DEAD_LETTER_QUEUE
from adapters.bullmq.options import job_options, worker_options
from adapters.bullmq.publisher import check_custom_job_id
from adapters.bullmq.return_values import json_safe
from adapters.bullmq.startup_checks import check_version_marker
from adapters.bullmq.worker_config import WorkerConfig
from domain.errors import ConfigurationError
from domain.jobs import QueueName
from domain.values import Channel


def test_a_misspelt_worker_option_is_refused_with_a_hint() -> None:
    """``lock_duration`` (which bullmq would silently ignore) is refused, pointing at ``lockDuration``."""
    with pytest.raises(ConfigurationError, match="did you mean 'lockDuration'"):
        worker_options({"lock_duration": 1000})


def test_a_mistyped_option_value_is_refused() -> None:
    """A string concurrency and a bare-dict backoff without a known type are refused."""
    with pytest.raises(ConfigurationError, match="concurrency"):
        worker_options({"concurrency": "10"})
    with pytest.raises(ConfigurationError, match="backoff"):
        job_options({"backoff": {"type": "exponentail", "delay": 1000}})


def test_well_formed_job_options_pass_unchanged() -> None:
    """The producer defaults and retention limits are accepted as they are."""
    options = {
        "jobId": "a-b",
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 1000},
        "removeOnComplete": {"age": 3600, "count": 10},
        "removeOnFail": 5,
    }
    assert job_options(options) == options


def test_json_safe_converts_datetimes_dates_enums_and_tuples() -> None:
    """A datetime (which bullmq's json.dumps would choke on) becomes the string Date.toJSON writes."""
    moment = datetime(2025, 7, 1, 16, 30, tzinfo=timezone(timedelta(hours=2)))
    value = {"at": moment, "day": date(2025, 7, 1), "channels": (Channel.SMS,), "amount": Decimal("1.50")}
    assert json_safe(value) == {
        "at": "2025-07-01T14:30:00.000Z",
        "day": "2025-07-01",
        "channels": ["sms"],
        "amount": "1.50",
    }


def test_json_safe_refuses_naive_datetimes_and_unknown_types() -> None:
    """A naive datetime and an arbitrary object are refused instead of being stringified silently."""
    with pytest.raises(ValueError, match="naive"):
        json_safe({"at": datetime(2025, 7, 1)})  # the naive value under test
    with pytest.raises(TypeError):
        json_safe({"x": object()})
    assert json_safe(datetime(2025, 7, 1, tzinfo=UTC)) == "2025-07-01T00:00:00.000Z"


@pytest.mark.parametrize("marker", [None, "bullmq:6.7.0", "bullmq:6.0.1"])
def test_compatible_version_markers_pass(marker: str | None) -> None:
    """No marker (a fresh queue) and any npm bullmq 6.x marker are accepted."""
    check_version_marker(marker)


@pytest.mark.parametrize("marker", ["bullmq:5.12.0", "bullmq:7.0.0", "bullmq-pro:6.7.0", "garbage"])
def test_incompatible_version_markers_are_refused(marker: str) -> None:
    """Another major, another library or an unreadable marker stops the worker with a message naming it."""
    with pytest.raises(ConfigurationError, match="npm bullmq major 6"):
        check_version_marker(marker)


def test_socket_timeout_at_or_below_the_longest_block_is_refused() -> None:
    """redis-py's 5 s default (below bullmq's 10 s block) is refused; None and 15 s are accepted."""
    with pytest.raises(ConfigurationError, match="socket timeout"):
        RedisSettings(socket_timeout_s=5.0)
    assert RedisSettings(socket_timeout_s=None).socket_timeout_s is None
    assert RedisSettings().socket_timeout_s == 15.0


def test_grace_period_must_stay_below_half_the_lock_duration() -> None:
    """Locks are not renewed while draining, so a grace period of half the lock duration or more is refused."""
    with pytest.raises(ConfigurationError, match="grace period"):
        WorkerConfig(queue=QueueName.REMINDERS, lock_duration_ms=10_000, grace_period_s=5.0)
    with pytest.raises(ConfigurationError, match="dead-letter"):
        WorkerConfig(queue=DEAD_LETTER_QUEUE)


def test_worker_config_passes_only_known_options_to_bullmq() -> None:
    """The options built for bullmq go through the validator and carry the camelCase keys bullmq reads."""
    options = WorkerConfig(
        queue=QueueName.NURTURE, concurrency=7, lock_duration_ms=20_000, grace_period_s=5
    ).bullmq_options(None)
    assert (options["concurrency"], options["lockDuration"], options["autorun"]) == (7, 20_000, False)


@pytest.mark.parametrize("job_id", ["", "42", "a:b", "a:b:c:d"])
def test_custom_ids_node_would_refuse_are_refused(job_id: str) -> None:
    """Integer-looking ids and ':' outside a three-part id are refused, as npm bullmq does."""
    with pytest.raises(ValueError, match="custom job id"):
        check_custom_job_id(job_id)
