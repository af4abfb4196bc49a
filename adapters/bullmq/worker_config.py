"""What one queue's worker process is configured with, validated when built (not when the worker starts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import redis.asyncio as redis_asyncio

from adapters.bullmq.connection import RedisSettings
from adapters.bullmq.options import worker_options
from adapters.redis_topology import QueuePrefixes
from domain.errors import ConfigurationError
from domain.jobs import CONSUMED_QUEUES, QueueName


@attrs.frozen
class WorkerConfig:
    """Everything one queue's worker process needs; built by entrypoints/settings.py from the environment."""

    queue: QueueName
    redis: RedisSettings = attrs.field(factory=RedisSettings)
    prefix: str = "bull"
    """The deployment's prefix (BULLMQ_PREFIX): our own keys, and every queue without a prefix of its own."""
    queue_prefixes: Mapping[str, str] = attrs.field(factory=dict)
    """Queues with a prefix of their own (BULLMQ_QUEUE_PREFIXES), by queue name."""
    concurrency: int = 10
    lock_duration_ms: int = 30_000
    stalled_interval_ms: int = 30_000
    max_stalled_count: int = 10
    """Stalls (worker killed, lock lost) a job may have before bullmq fails it. A stall is not an attempt: every
    send is guarded by the ledger, so the limit only ends a job that kills its worker each time (bullmq's default
    1 dead-lettered jobs interrupted twice, their messages never sent: issue 11)."""
    grace_period_s: float = 10.0
    """Below supervisord's ``stopwaitsecs`` and below half the lock duration (locks are not renewed while
    draining: bullmq stops its renewal loop with its fetch loop)."""
    configuration_error_delay_s: float = 60.0
    """How long a job that met a ConfigurationError waits before another worker may try it."""
    fetch_retry_delay_ms: int = 1_000
    """Pause of the fetch loop after a connection error (bullmq's ``runRetryDelay``; its default is 15 s)."""
    metrics_data_points: int = 10_080
    """Minutes of bullmq's own completed/failed counts kept per queue (a week): the rates of /health/queues."""
    heartbeat_interval_s: float = 5.0
    """The heartbeat's period; it expires after three missed beats."""
    metrics_flush_interval_s: float = 5.0
    dead_letter_sweep_interval_s: float = 300.0
    schedule_check_interval_s: float = 30.0
    """How often the process re-asserts the schedules (adapters/scheduling/keeper.py): the longest a schedule
    stays missing after a queue reset while workers run."""
    dead_letter_settle_s: float = 30.0
    """Failures younger than this are left to the ``failed`` event's copy; the sweep takes the older ones."""

    def __attrs_post_init__(self) -> None:
        if self.queue not in CONSUMED_QUEUES:  # the dead-letter queue, or a name from outside the topology
            raise ConfigurationError(f"nothing consumes the {self.queue} queue")
        if not 0 < self.grace_period_s * 1000 < self.lock_duration_ms / 2:
            raise ConfigurationError("grace period must be positive and below half the lock duration")
        self.bullmq_options(None)  # validate now, not when the worker starts

    @property
    def prefixes(self) -> QueuePrefixes:
        return QueuePrefixes(self.prefix, self.queue_prefixes)

    @property
    def queue_prefix(self) -> str:
        """The prefix of this worker's queue's keys."""
        return self.prefixes.of(str(self.queue))

    def bullmq_options(self, client: redis_asyncio.Redis | None) -> dict[str, Any]:
        return worker_options(
            {
                "prefix": self.queue_prefix,
                "concurrency": self.concurrency,
                "lockDuration": self.lock_duration_ms,
                "stalledInterval": self.stalled_interval_ms,
                "maxStalledCount": self.max_stalled_count,
                "runRetryDelay": self.fetch_retry_delay_ms,
                "metrics": {"maxDataPoints": self.metrics_data_points},
                "autorun": False,
                "connection": client,
            }
        )
