"""Metrics recorded by several worker processes meet in Redis and render as Prometheus text and JSON."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from adapters.observability.metrics import MetricsRecorder, MetricsSnapshot, read_recorded, render_prometheus
from adapters.observability.provider_calls import provider_call
from domain.errors import ClaimLapsed, DeliveryRejected
from domain.sms import sms_length
from tests.support.canaries import PHONE, leaked


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def _snapshot(recorded: list) -> MetricsSnapshot:  # type: ignore[type-arg]
    return MetricsSnapshot(queues=[], dead_letter_size=None, schedules=[], recorded=recorded, dependencies={})


async def test_two_processes_add_up(redis_prefix: tuple[Redis, str]) -> None:
    """Counters and histograms flushed by two recorders (two worker processes) are summed in one exposition."""
    client, prefix = redis_prefix
    reminders, dunning = MetricsRecorder(prefix), MetricsRecorder(prefix)
    reminders.job_finished("reminders", "process-reminder", "completed", wait_seconds=0.2, run_seconds=0.03)
    reminders.job_finished("reminders", "process-reminder", "completed", wait_seconds=4.0, run_seconds=0.07)
    reminders.provider_message("twilio", "sms", "rejected", "21610")
    dunning.job_finished("reminders", "process-reminder", "retried", wait_seconds=None, run_seconds=120.0)
    dunning.provider_message("twilio", "sms", "rejected", "21610")
    dunning.provider_message("sendgrid", "email", "sent", None)
    await reminders.flush(client)
    await dunning.flush(client)

    samples = _samples(render_prometheus(_snapshot(await read_recorded(client, prefix))))
    job = {"job_name": "process-reminder", "queue": "reminders"}
    assert samples[_key("clientflow_jobs_total", **job, outcome="completed")] == 2
    assert samples[_key("clientflow_jobs_total", **job, outcome="retried")] == 1
    twilio = {"channel": "sms", "error_code": "21610", "outcome": "rejected", "provider": "twilio"}
    assert samples[_key("clientflow_provider_messages_total", **twilio)] == 2
    sendgrid = {"channel": "email", "error_code": "none", "outcome": "sent", "provider": "sendgrid"}
    assert samples[_key("clientflow_provider_messages_total", **sendgrid)] == 1
    assert samples[_key("clientflow_job_wait_seconds_count", **job)] == 2
    assert samples[_key("clientflow_job_wait_seconds_bucket", **job, le="0.25")] == 1
    assert samples[_key("clientflow_job_wait_seconds_bucket", **job, le="5.0")] == 2
    assert samples[_key("clientflow_job_run_seconds_count", **job)] == 3
    assert samples[_key("clientflow_job_run_seconds_bucket", **job, le="60.0")] == 2
    assert samples[_key("clientflow_job_run_seconds_bucket", **job, le="+Inf")] == 3
    assert samples[_key("clientflow_job_run_seconds_sum", **job)] == pytest.approx(120.1)


async def test_label_values_are_bounded_and_redacted(redis_prefix: tuple[Redis, str]) -> None:
    """A provider error code carrying a phone number is masked and cut short before it becomes a label."""
    client, prefix = redis_prefix
    recorder = MetricsRecorder(prefix)
    recorder.provider_message("twilio", "sms", "rejected", f"invalid 'To' {PHONE} " + "x" * 200)
    await recorder.flush(client)
    text = render_prometheus(_snapshot(await read_recorded(client, prefix)))
    assert leaked(text) == []
    (label,) = [s.labels["error_code"] for f in text_string_to_metric_families(text.decode()) for s in f.samples]
    assert len(label) == 64


async def test_a_failed_flush_keeps_the_counts(redis_prefix: tuple[Redis, str]) -> None:
    """When Redis cannot be reached the deltas stay pending and the next flush writes all of them."""
    client, prefix = redis_prefix
    recorder = MetricsRecorder(prefix)
    recorder.job_finished("nurture", "process-nurture", "completed", wait_seconds=None, run_seconds=0.01)
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    with pytest.raises(Exception, match=r"(?i)connect"):
        await recorder.flush(unreachable)
    await unreachable.aclose()
    recorder.job_finished("nurture", "process-nurture", "completed", wait_seconds=None, run_seconds=0.01)
    await recorder.flush(client)
    (counter,) = [s for s in await read_recorded(client, prefix) if s.metric == "jobs_total"]
    assert counter.value == 2


async def test_run_flushes_once_more_when_stopped(redis_prefix: tuple[Redis, str]) -> None:
    """The flusher loop writes what was counted before shutdown, without waiting for its next interval."""
    client, prefix = redis_prefix
    recorder = MetricsRecorder(prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(client, stop, interval_seconds=3600))
    recorder.job_finished("snapshots", "process-snapshots", "completed", wait_seconds=1.0, run_seconds=0.5)
    stop.set()
    await task
    assert [s.metric for s in await read_recorded(client, prefix)].count("jobs_total") == 1


async def test_sms_segments_are_counted_by_encoding_for_accepted_messages_only(redis_prefix: tuple[Redis, str]) -> None:
    """Each SMS a provider accepted adds the segments it bills (GSM-7 or UCS-2); a refused one adds none."""
    client, prefix = redis_prefix
    recorder = MetricsRecorder(prefix)
    for body in ("a" * 161, "Hi 😀 " * 20):  # 2 GSM-7 segments, then 120 UCS-2 units = 2 segments
        with provider_call("twilio", "sms", recorder, sms=sms_length(body)):
            pass
    with pytest.raises(DeliveryRejected), provider_call("twilio", "sms", recorder, sms=sms_length("b" * 400)):
        raise DeliveryRejected("recipient has opted out", "21610")
    await recorder.flush(client)

    samples = _samples(render_prometheus(_snapshot(await read_recorded(client, prefix))))
    assert samples[_key("clientflow_sms_segments_total", encoding="gsm7", provider="twilio")] == 2
    assert samples[_key("clientflow_sms_segments_total", encoding="ucs2", provider="twilio")] == 2


async def test_a_send_refused_because_its_claim_lapsed_counts_as_lapsed(redis_prefix: tuple[Redis, str]) -> None:
    """A sender that refuses to write its request past the claim's deadline sent nothing: counted as ``lapsed``, not
    as an ``error`` (which would read as a bug) nor as a message handed over."""
    client, prefix = redis_prefix
    recorder = MetricsRecorder(prefix)
    with pytest.raises(ClaimLapsed), provider_call("twilio", "sms", recorder, sms=sms_length("hello")):
        raise ClaimLapsed
    await recorder.flush(client)

    samples = _samples(render_prometheus(_snapshot(await read_recorded(client, prefix))))
    messages = {
        labels: value for (name, labels), value in samples.items() if name == "clientflow_provider_messages_total"
    }
    assert messages == {_key("", channel="sms", error_code="none", outcome="lapsed", provider="twilio")[1]: 1}
