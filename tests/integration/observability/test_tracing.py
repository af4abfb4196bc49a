"""OpenTelemetry: the consumer span continues the trace a real Node producer (bullmq-otel) started; no PII."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from bullmq import Job
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from adapters.observability import tracing
from adapters.observability.tracing import child_span, current_trace_id, job_span, set_span_attributes
from tests.integration.observability.conftest import SpanCapture
from tests.support.canaries import EMAIL, PAYMENT_LINK, PHONE, job_data, leaked
from tests.support.fakeservers.otlp import FakeOtlpCollector
from tests.support.telemetry import consume_one, node_add_with_telemetry


async def test_consumer_span_continues_the_node_producer_trace(
    spans: SpanCapture, redis_prefix: tuple[Redis, str]
) -> None:
    """A job added by Node with bullmq-otel is processed under a CONSUMER span in the producer's trace,
    whose parent is the producer's span; child spans nest under it and carry no PII."""
    _, prefix = redis_prefix
    produced = await node_add_with_telemetry(prefix, "reminders", "process-reminder", job_data())
    assert json.loads(produced["tm"])["traceparent"].startswith(f"00-{produced['traceId']}-{produced['spanId']}-")
    seen: dict[str, Any] = {}

    def handle(job: Job) -> None:
        seen["tm"] = job.opts.get("tm")
        with job_span("reminders", job.name, job.id, job.opts.get("tm"), attempt=job.attemptsMade + 1) as span:
            seen["trace_id"] = current_trace_id()
            with child_span(
                "SELECT appointments",
                attributes={
                    "db.system.name": "postgresql",
                    "db.query.text": f"select * from contacts where phone = '{PHONE}' or email = '{EMAIL}'",  # noqa: S608 -- never executed: canaries in text
                    "contact.phone": PHONE,
                    "paymentLink": PAYMENT_LINK,
                },
            ):
                pass
            set_span_attributes(span, {"clientflow.outcome": "sent", "clientflow.to": PHONE})

    await consume_one(prefix, "reminders", handle)

    finished = spans.finished()
    consumer = next(s for s in finished if s.kind is SpanKind.CONSUMER)
    child = next(s for s in finished if s.name == "SELECT appointments")
    assert seen["tm"] == produced["tm"]
    assert seen["trace_id"] == produced["traceId"]
    assert consumer.context is not None
    assert consumer.parent is not None
    assert format(consumer.context.trace_id, "032x") == produced["traceId"]
    assert format(consumer.parent.span_id, "016x") == produced["spanId"]
    assert consumer.parent.is_remote
    assert consumer.name == "process reminders"
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "bullmq",
        "messaging.destination.name": "reminders",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": produced["jobId"],
        "bullmq.job.name": "process-reminder",
        "bullmq.job.attempt": 1,
        "clientflow.outcome": "sent",
    }
    assert child.parent is not None
    assert child.parent.span_id == consumer.context.span_id
    assert child.kind is SpanKind.CLIENT
    child_attributes = dict(child.attributes or {})
    assert child_attributes["db.system.name"] == "postgresql"
    assert set(child_attributes) == {"db.system.name", "db.query.text"}
    assert leaked(repr([dict(s.attributes or {}) for s in finished])) == []


def test_failure_is_recorded_without_pii(spans: SpanCapture) -> None:
    """An exception inside the job span marks it as an error with a masked message and traceback."""
    with pytest.raises(RuntimeError), job_span("dunning", "process-dunning", "7"):
        raise RuntimeError(f"refused {PHONE} for {PAYMENT_LINK}")
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "RuntimeError"
    assert str(attributes["exception.message"]).startswith("refused +14*")
    assert leaked(repr(attributes)) == []


@pytest.mark.parametrize("tm", [None, "", "not json", "[1, 2]", '{"traceparent": "00-zz-yy-01"}'])
def test_missing_or_unreadable_context_starts_a_new_trace(spans: SpanCapture, tm: str | None) -> None:
    """A job without (or with a broken) ``tm`` is processed under a root span of a new trace."""
    with job_span("snapshots", "process-snapshots", "1", tm):
        pass
    (span,) = spans.finished()
    assert span.parent is None


async def test_spans_reach_an_otlp_http_collector() -> None:
    """Wiring: init_tracing with an endpoint exports protobuf spans to <endpoint>/v1/traces in batches."""
    collector = FakeOtlpCollector()
    await collector.start()
    try:
        tracing.init_tracing("clientflow-worker", endpoint=collector.base_url, environment="test", set_global=False)
        with job_span("nurture", "process-nurture", "n-1"):
            pass
        assert collector.exports == []  # batched: nothing is sent while the job runs
        await asyncio.to_thread(tracing.shutdown_tracing, 10.0)
    finally:
        await collector.close()

    ((resource, span),) = collector.spans()
    assert resource["service.name"] == "clientflow-worker"
    assert resource["deployment.environment.name"] == "test"
    assert span.name == "process nurture"
    assert span.kind == span.SPAN_KIND_CONSUMER
    assert collector.requests[0].headers["Content-Type"] == "application/x-protobuf"


async def test_every_job_span_reaches_the_collector_of_the_current_provider() -> None:
    """Each job's span arrives at the OTLP collector with its name, scope and attributes; after a shutdown and a
    new ``init_tracing`` (tests, a restarted pipeline) spans go to the new collector, none to the old."""
    first, second = FakeOtlpCollector(), FakeOtlpCollector()
    await first.start()
    await second.start()
    try:
        tracing.init_tracing("clientflow-worker", endpoint=first.base_url, set_global=False)
        for job_id in ("1", "2", "3"):
            with job_span("snapshots", "process-snapshots", job_id, attempt=1) as span:
                set_span_attributes(span, {"clientflow.outcome": "stored"})
        await asyncio.to_thread(tracing.shutdown_tracing, 10.0)
        tracing.init_tracing("clientflow-worker", endpoint=second.base_url, set_global=False)
        with job_span("snapshots", "process-snapshots", "4"):
            pass
        await asyncio.to_thread(tracing.shutdown_tracing, 10.0)
    finally:
        await first.close()
        await second.close()

    first_spans = [span for _, span in first.spans()]
    assert [span.name for span in first_spans] == ["process snapshots"] * 3
    attributes = [{a.key: a.value for a in span.attributes} for span in first_spans]
    assert [a["messaging.message.id"].string_value for a in attributes] == ["1", "2", "3"]
    assert {a["clientflow.outcome"].string_value for a in attributes} == {"stored"}
    assert {a["bullmq.job.attempt"].int_value for a in attributes} == {1}
    scopes = {scope.scope.name for export in first.exports for rs in export.resource_spans for scope in rs.scope_spans}
    assert scopes == {tracing.INSTRUMENTATION_NAME}
    assert [span.name for _, span in second.spans()] == ["process snapshots"]
    assert {a.key: a.value.string_value for a in second.spans()[0][1].attributes}["messaging.message.id"] == "4"
