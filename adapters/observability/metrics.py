"""Metrics: recorded in each worker process, shared through Redis, exposed by the health server.

Workers run one process per queue (and may run on several hosts), so counters cannot live in one process: each
process counts in memory and ``MetricsRecorder.run`` adds the deltas to one Redis hash every few seconds (one
pipelined round trip, never per job). The health server reads that hash plus BullMQ's own keys and renders a
``MetricsSnapshot`` as Prometheus text or JSON. Labels are bounded: queue, job name, outcome, provider, channel,
error code, schedule, state; never anything per contact. A SIGKILLed process loses its last unflushed seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.observability.redaction import redact_text
from adapters.periodic import run_periodically
from adapters.redis_keys import recorded_metrics_key

if TYPE_CHECKING:
    from adapters.health.owed import OwedReport

_log = logging.getLogger(__name__)

NAMESPACE = "clientflow"
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_HISTOGRAM_BUCKETS = {"job_wait_seconds": WAIT_BUCKETS, "job_run_seconds": RUN_BUCKETS}
_MAX_LABEL_LENGTH = 64

Labels = tuple[tuple[str, str], ...]


def _label_value(value: str | None) -> str:
    return redact_text(value or "none")[:_MAX_LABEL_LENGTH]


def _field(metric: str, labels: Mapping[str, str]) -> str:
    return json.dumps([metric, dict(sorted(labels.items()))], separators=(",", ":"))


# Building a field (redaction, json.dumps) cost most of a job's metrics; labels are bounded, so each field is built
# once per process. The caches are bounded anyway, so a producer inventing job names cannot grow them for ever.
_FIELD_CACHE_SIZE = 1024


@attrs.frozen
class _HistogramFields:
    """The hash fields of one histogram series: one per bucket (the last is +Inf), the sum and the count."""

    buckets: tuple[str, ...]
    sum: str
    count: str


@functools.lru_cache(maxsize=_FIELD_CACHE_SIZE)
def _histogram_fields(metric: str, queue: str, job_name: str) -> _HistogramFields:
    labels = {"queue": _label_value(queue), "job_name": _label_value(job_name)}
    bounds = [*(repr(bound) for bound in _HISTOGRAM_BUCKETS[metric]), "+Inf"]
    return _HistogramFields(
        buckets=tuple(_field(f"{metric}_bucket", {**labels, "le": bound}) for bound in bounds),
        sum=_field(f"{metric}_sum", labels),
        count=_field(f"{metric}_count", labels),
    )


@functools.lru_cache(maxsize=_FIELD_CACHE_SIZE)
def _jobs_total_field(queue: str, job_name: str, outcome: str) -> str:
    labels = {"queue": queue, "job_name": job_name, "outcome": outcome}
    return _field("jobs_total", {key: _label_value(value) for key, value in labels.items()})


@functools.lru_cache(maxsize=_FIELD_CACHE_SIZE)
def _provider_messages_field(provider: str, channel: str, outcome: str, error_code: str | None) -> str:
    labels = {"provider": provider, "channel": channel, "outcome": outcome, "error_code": error_code}
    return _field("provider_messages_total", {key: _label_value(value) for key, value in labels.items()})


@functools.lru_cache(maxsize=_FIELD_CACHE_SIZE)
def _counter_field(metric: str, labels: tuple[tuple[str, str], ...]) -> str:
    return _field(metric, {key: _label_value(value) for key, value in labels})


@attrs.define
class MetricsRecorder:
    """In-process counters of one worker process; ``run`` flushes them to Redis."""

    prefix: str
    _pending: defaultdict[str, float] = attrs.field(factory=lambda: defaultdict(float), init=False)
    _gauges: dict[str, float] = attrs.field(factory=dict, init=False)  # latest values, written whole (HSET)

    def _observe(self, metric: str, queue: str, job_name: str, seconds: float) -> None:
        fields = _histogram_fields(metric, queue, job_name)
        pending = self._pending
        pending[fields.buckets[bisect.bisect_left(_HISTOGRAM_BUCKETS[metric], seconds)]] += 1.0
        pending[fields.sum] += max(seconds, 0.0)
        pending[fields.count] += 1.0

    def job_finished(
        self, queue: str, job_name: str, outcome: str, wait_seconds: float | None, run_seconds: float
    ) -> None:
        """One job attempt ended. ``outcome``: completed, retried, deferred or failed (the last attempt).

        ``wait_seconds`` is the job's time from added (plus its delay) to started (``processedOn``), for first
        attempts only (None otherwise); ``run_seconds`` the attempt's own duration.
        """
        self._pending[_jobs_total_field(queue, job_name, outcome)] += 1.0
        if wait_seconds is not None:
            self._observe("job_wait_seconds", queue, job_name, wait_seconds)
        self._observe("job_run_seconds", queue, job_name, run_seconds)

    def provider_message(self, provider: str, channel: str, outcome: str, error_code: str | None) -> None:
        """One message handed to a provider. ``outcome``: as ``adapters.observability.provider_calls`` reads it
        (sent, rejected, rate_limited, unknown, failed, unreachable, misconfigured, lapsed; error for anything else);
        ``error_code`` the provider's code (Twilio 21610, an HTTP status for SendGrid) or None."""
        self._pending[_provider_messages_field(provider, channel, outcome, error_code)] += 1.0

    def sms_segments(self, provider: str, encoding: str, segments: int) -> None:
        """An SMS the provider accepted: the segments it bills (domain/sms.py), by encoding (``gsm7``, ``ucs2``)."""
        labels = (("provider", provider), ("encoding", encoding))
        self._pending[_counter_field("sms_segments_total", labels)] += float(segments)

    def webhook_event(self, provider: str, kind: str, outcome: str) -> None:
        """One webhook event handled. ``kind``: the provider's status or event name (``other`` beyond its documented
        list); ``outcome``: applied, unchanged, ignored or received (a SendGrid batch's events)."""
        labels = (("provider", provider), ("kind", kind), ("outcome", outcome))
        self._pending[_counter_field("webhook_events_total", labels)] += 1.0

    def webhook_refused(self, provider: str, reason: str) -> None:
        """One webhook request refused: unsigned, bad_signature, stale_timestamp, too_large, not_configured ..."""
        self._pending[_counter_field("webhook_refusals_total", (("provider", provider), ("reason", reason)))] += 1.0

    def sends_reconciled(self, outcome: str, count: int) -> None:
        """Unsettled sends looked at by reconciliation. ``outcome``: settled, given_up (failed_unconfirmed: alert)."""
        if count:
            self._pending[_counter_field("reconciled_sends_total", (("outcome", outcome),))] += float(count)

    def unsettled_sends(self, channel: str, older_than_seconds: int, count: int) -> None:
        """Gauge: ledger entries of ``channel`` still claimed/unknown ``older_than_seconds`` after their last change
        (one process, the webhooks program, sets it)."""
        labels = (("channel", channel), ("older_than_seconds", str(older_than_seconds)))
        self._gauges[_counter_field("unsettled_sends", labels)] = float(count)

    def maintenance_removed(self, queue: str, kind: str, count: int) -> None:
        """A maintenance run removed ``count`` items of ``kind`` (completed, failed, expired, leftovers) of
        ``queue`` (a queue name, ``dead-letter`` or ``cf`` for our own keys); zero counts create the series."""
        self._pending[_counter_field("maintenance_removed_total", (("queue", queue), ("kind", kind)))] += float(count)

    def model_request(self, model: str, outcome: str, seconds: float) -> None:
        """One request to a language model: ``outcome`` is ``answered`` or the fallback reason it ended with;
        ``seconds`` its latency (the counters' ratio is the mean latency per model and outcome)."""
        labels = {"model": _label_value(model), "outcome": _label_value(outcome)}
        self._pending[_field("model_requests_total", labels)] += 1.0
        self._pending[_field("model_request_seconds_total", labels)] += max(seconds, 0.0)

    def personalization(
        self, org_id: str, channel: str, fallback: str | None, model: str | None, input_tokens: int, output_tokens: int
    ) -> None:
        """One personalization attempt: used, or the fallback and its reason; the tokens it cost, per org."""
        outcome = {"channel": channel, "outcome": "fallback" if fallback else "used", "reason": fallback or "none"}
        self._pending[_field("personalizations_total", {k: _label_value(v) for k, v in outcome.items()})] += 1.0
        for kind, tokens in (("input", input_tokens), ("output", output_tokens)):
            if tokens:
                labels = {"org_id": _label_value(org_id), "model": _label_value(model), "kind": kind}
                self._pending[_field("model_tokens_total", labels)] += float(tokens)

    async def flush(self, client: aioredis.Redis) -> None:
        """Add the pending deltas (and set the gauges) in Redis; on failure they stay pending for the next flush."""
        pending, self._pending = self._pending, defaultdict(float)
        gauges, self._gauges = self._gauges, {}
        if not pending and not gauges:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                for field, amount in pending.items():
                    pipe.hincrbyfloat(recorded_metrics_key(self.prefix), field, amount)
                for field, value in gauges.items():
                    pipe.hset(recorded_metrics_key(self.prefix), field, value)
                await pipe.execute()
        except Exception:
            for field, amount in pending.items():
                self._pending[field] += amount
            self._gauges = {**gauges, **self._gauges}
            raise

    async def run(self, client: aioredis.Redis, stop: asyncio.Event, interval_seconds: float = 5.0) -> None:
        """Flush every ``interval_seconds`` until ``stop`` is set, then once more."""
        await run_periodically(lambda: self._flush_or_log(client), interval_seconds, stop, wait_first=True)
        await self._flush_or_log(client)

    async def _flush_or_log(self, client: aioredis.Redis) -> None:
        try:
            await self.flush(client)
        except Exception as exc:  # Redis down: keep counting, try again next time
            _log.warning("metrics flush failed: %s", type(exc).__name__)


@attrs.frozen
class RecordedSample:
    metric: str
    labels: Labels
    value: float


async def read_recorded(client: aioredis.Redis, prefix: str) -> list[RecordedSample]:
    """Every sample the workers have flushed, from the shared hash."""
    raw: dict[bytes | str, bytes | str] = await client.hgetall(recorded_metrics_key(prefix))
    samples = []
    for field, value in raw.items():
        metric, labels = json.loads(field)
        samples.append(RecordedSample(metric, tuple(sorted(labels.items())), float(value)))
    return sorted(samples, key=lambda s: (s.metric, s.labels))


@attrs.frozen
class QueueStats:
    """One BullMQ queue as the health server sees it."""

    name: str
    counts: Mapping[str, int]
    oldest_waiting_age_seconds: float | None
    workers: int
    completed_per_minute: float | None
    failed_per_minute: float | None
    waiting_age_limit_seconds: float | None = None
    """How long its oldest waiting job may wait before the backlog alert (domain/jobs.py ``waiting_age_limit_s``)."""


@attrs.frozen
class ScheduleStatus:
    """A schedule's state as the scheduler records it (see adapters.scheduling.status_store)."""

    name: str
    pattern: str | None
    tz: str | None
    next_run: str | None
    last_started: str | None
    last_finished: str | None
    last_outcome: str | None
    jobs_queued: int | None
    removed: str | None = None
    """Maintenance only: the last run's counts, a JSON object by ``<queue>:<kind>``."""


@attrs.frozen
class MetricsSnapshot:
    queues: Sequence[QueueStats]
    dead_letter_size: int | None
    schedules: Sequence[ScheduleStatus]
    recorded: Sequence[RecordedSample]
    dependencies: Mapping[str, bool]
    redis_memory: Mapping[str, int] = attrs.field(factory=dict)
    """Redis' ``INFO memory``: ``used`` and, when a limit is set, ``max`` (bytes)."""
    owed: OwedReport | None = None
    """Messages still owed that the queues let go of (adapters/health/owed.py), when PostgreSQL answered."""

    def as_json(self) -> dict[str, object]:
        """The same facts as the Prometheus text, shaped for people and scripts."""
        return {
            "dependencies": {name: "up" if up else "down" for name, up in self.dependencies.items()},
            "queues": [attrs.asdict(q) for q in self.queues],
            "dead_letter_size": self.dead_letter_size,
            "schedules": [attrs.asdict(s) for s in self.schedules],
            "recorded": [{"metric": s.metric, "labels": dict(s.labels), "value": s.value} for s in self.recorded],
            "redis_memory": dict(self.redis_memory),
            "owed": attrs.asdict(self.owed) if self.owed is not None else None,
        }


def _epoch_seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._dependency_metrics()
        yield from self._redis_memory_metrics()
        yield from self._queue_metrics()
        yield from self._schedule_metrics()
        yield from self._recorded_metrics()

    def _dependency_metrics(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{NAMESPACE}_dependency_up", "1 when the dependency answers", labels=["dependency"])
        for name, is_up in sorted(self._snapshot.dependencies.items()):
            up.add_metric([name], 1.0 if is_up else 0.0)
        yield up

    def _redis_memory_metrics(self) -> Iterator[Metric]:
        memory = self._snapshot.redis_memory
        for key, help_text in (("used", "Memory Redis uses (INFO used_memory)"), ("max", "Redis' maxmemory limit")):
            if key in memory:
                yield GaugeMetricFamily(f"{NAMESPACE}_redis_memory_{key}_bytes", help_text, value=memory[key])

    def _queue_metrics(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        jobs = GaugeMetricFamily(f"{NAMESPACE}_queue_jobs", "Jobs per queue and state", labels=["queue", "state"])
        oldest = GaugeMetricFamily(
            f"{NAMESPACE}_queue_oldest_waiting_age_seconds", "Age of the oldest waiting job", labels=["queue"]
        )
        limit = GaugeMetricFamily(
            f"{NAMESPACE}_queue_waiting_age_limit_seconds",
            "How long the oldest waiting job may wait before the backlog alert",
            labels=["queue"],
        )
        workers = GaugeMetricFamily(f"{NAMESPACE}_queue_workers", "Workers heartbeating", labels=["queue"])
        rate = GaugeMetricFamily(
            f"{NAMESPACE}_queue_finished_per_minute",
            "Jobs finished per minute over the last minutes (BullMQ metrics)",
            labels=["queue", "state"],
        )
        for queue in snapshot.queues:
            for state, count in sorted(queue.counts.items()):
                jobs.add_metric([queue.name, state], count)
            if queue.oldest_waiting_age_seconds is not None:
                oldest.add_metric([queue.name], queue.oldest_waiting_age_seconds)
            if queue.waiting_age_limit_seconds is not None:
                limit.add_metric([queue.name], queue.waiting_age_limit_seconds)
            workers.add_metric([queue.name], queue.workers)
            for state, per_minute in (("completed", queue.completed_per_minute), ("failed", queue.failed_per_minute)):
                if per_minute is not None:
                    rate.add_metric([queue.name, state], per_minute)
        yield from (jobs, oldest, limit, workers, rate)
        if snapshot.dead_letter_size is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_dead_letter_jobs", "Jobs in the dead-letter queue", value=snapshot.dead_letter_size
            )
        if snapshot.owed is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_dead_letter_owed_jobs",
                "Dead-lettered message jobs whose message is still owed",
                value=snapshot.owed.dead_letter_owed,
            )
            stuck = GaugeMetricFamily(
                f"{NAMESPACE}_send_ledger_stuck_entries",
                "Send-ledger entries still claimed/unknown long after the settle period",
                labels=["state"],
            )
            for state, count in sorted(snapshot.owed.stuck_ledger.items()):
                stuck.add_metric([state], count)
            yield stuck

    def _schedule_metrics(self) -> Iterator[Metric]:
        last_run = GaugeMetricFamily(
            f"{NAMESPACE}_schedule_last_run_timestamp_seconds", "When the schedule last finished", labels=["schedule"]
        )
        next_run = GaugeMetricFamily(
            f"{NAMESPACE}_schedule_next_run_timestamp_seconds", "When the schedule fires next", labels=["schedule"]
        )
        succeeded = GaugeMetricFamily(
            f"{NAMESPACE}_schedule_last_run_succeeded", "1 when the last run's outcome was ok", labels=["schedule"]
        )
        for schedule in self._snapshot.schedules:
            if (finished := _epoch_seconds(schedule.last_finished)) is not None:
                last_run.add_metric([schedule.name], finished)
            if (upcoming := _epoch_seconds(schedule.next_run)) is not None:
                next_run.add_metric([schedule.name], upcoming)
            if schedule.last_outcome is not None:
                succeeded.add_metric([schedule.name], 1.0 if schedule.last_outcome == "ok" else 0.0)
        yield from (last_run, next_run, succeeded)

    def _recorded_metrics(self) -> Iterator[Metric]:
        by_metric: dict[str, list[RecordedSample]] = defaultdict(list)
        for sample in self._snapshot.recorded:
            by_metric[sample.metric].append(sample)
        for counter, help_text in (
            ("jobs_total", "Job attempts by outcome"),
            ("provider_messages_total", "Messages handed to providers by outcome and error code"),
            ("sms_segments_total", "SMS segments the providers accepted (what they bill), by encoding"),
            ("webhook_events_total", "Provider webhook events by provider, kind and outcome"),
            ("webhook_refusals_total", "Webhook requests refused (signature, age, size) by provider and reason"),
            ("reconciled_sends_total", "Unsettled sends settled from the provider or given up (failed_unconfirmed)"),
            ("maintenance_removed_total", "Items removed by queue maintenance, by queue and kind"),
            ("personalizations_total", "AI personalization attempts: used, or fallback and its reason"),
            ("model_requests_total", "Requests to the language model by model and outcome"),
            ("model_request_seconds_total", "Seconds spent in language model requests by model and outcome"),
            ("model_tokens_total", "Language model tokens per org, model and kind (input, output): the cost"),
        ):
            samples = by_metric.get(counter, [])
            label_names = [name for name, _ in samples[0].labels] if samples else []
            family = CounterMetricFamily(f"{NAMESPACE}_{counter.removesuffix('_total')}", help_text, labels=label_names)
            for sample in samples:
                family.add_metric([value for _, value in sample.labels], sample.value)
            yield family
        unsettled = GaugeMetricFamily(
            f"{NAMESPACE}_unsettled_sends",
            "Sends still claimed/unknown longer than older_than_seconds, per channel (reconciliation)",
            labels=["channel", "older_than_seconds"],
        )
        for sample in by_metric.get("unsettled_sends", []):
            unsettled.add_metric(
                [dict(sample.labels)["channel"], dict(sample.labels)["older_than_seconds"]], sample.value
            )
        yield unsettled
        for histogram, help_text in (
            ("job_wait_seconds", "Time from added to started"),
            ("job_run_seconds", "Time an attempt ran"),
        ):
            yield _histogram(histogram, help_text, by_metric)


def _histogram(metric: str, help_text: str, by_metric: Mapping[str, list[RecordedSample]]) -> Metric:
    bounds = [*(repr(b) for b in _HISTOGRAM_BUCKETS[metric]), "+Inf"]
    per_series: dict[Labels, dict[str, float]] = defaultdict(lambda: dict.fromkeys(bounds, 0.0))
    sums: dict[Labels, float] = defaultdict(float)
    for sample in by_metric.get(f"{metric}_bucket", []):
        labels = tuple((k, v) for k, v in sample.labels if k != "le")
        per_series[labels][dict(sample.labels)["le"]] += sample.value
    for sample in by_metric.get(f"{metric}_sum", []):
        sums[sample.labels] += sample.value
    family = HistogramMetricFamily(f"{NAMESPACE}_{metric}", help_text, labels=["job_name", "queue"])
    for labels, counts in sorted(per_series.items()):
        cumulative, running = [], 0.0
        for bound in bounds:
            running += counts[bound]
            cumulative.append((bound, running))
        family.add_metric([value for _, value in labels], cumulative, sums[labels])
    return family


def render_prometheus(snapshot: MetricsSnapshot) -> bytes:
    """The snapshot in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
