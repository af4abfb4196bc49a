"""Our OTLP/protobuf encoding of a batch reads back as the very message the SDK's encoder builds."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from adapters.observability.otlp_encoding import encode_export_request

CARRIER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "crm=1,x=y"}


def _provider(service: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    # Without an atexit hook, which would keep the provider and its spans alive for the whole session (the
    # collector-down test counts live spans).
    provider = TracerProvider(resource=Resource.create({"service.name": service}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _decoded(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(encode_export_request(spans))
    return request


def _job_spans(tracer: trace.Tracer) -> None:
    """Spans like the worker's: a CONSUMER span under a remote producer, a child, an outcome set at the end."""
    parent = TraceContextTextMapPropagator().extract(CARRIER, context=otel_context.Context())
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "bullmq",
        "messaging.message.id": "42",
        "bullmq.job.attempt": 1,
    }
    with tracer.start_as_current_span("process reminders", context=parent, kind=SpanKind.CONSUMER) as span:
        span.set_attributes(attributes)
        with tracer.start_as_current_span("SELECT appointments", kind=SpanKind.CLIENT) as child:
            child.set_attributes({"db.system.name": "postgresql", "rows": -3, "ratio": 0.25, "cached": False})
        span.set_attribute("clientflow.outcome", "sent")
    with tracer.start_as_current_span("scan", attributes={"note": "café ☕"}) as span:
        span.set_status(Status(StatusCode.ERROR, "TimeoutError"))
    with tracer.start_as_current_span("ok") as span:
        span.set_status(Status(StatusCode.OK))


def test_job_spans_decode_as_the_sdk_encodes_them() -> None:
    provider, exporter = _provider("worker")
    _job_spans(provider.get_tracer("clientflow.worker"))
    spans = list(exporter.get_finished_spans())

    assert _decoded(spans) == encode_spans(spans)
    parent = _decoded(spans).resource_spans[0].scope_spans[0].spans[1]
    assert parent.parent_span_id.hex() == "b7ad6b7169203331"
    assert parent.trace_state == "crm=1,x=y"


def test_spans_outside_the_fast_path_are_encoded_by_the_sdk() -> None:
    """A recorded exception (an event), a link, an array attribute: same message as the SDK's."""
    provider, exporter = _provider("worker")
    tracer = provider.get_tracer("clientflow.worker", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0")
    with pytest.raises(ValueError, match="boom"), tracer.start_as_current_span("fails"):
        raise ValueError("boom")
    with tracer.start_as_current_span("linked", links=[Link(trace.get_current_span().get_span_context())]):
        pass
    with tracer.start_as_current_span("listed", attributes={"keys": ["a", "b"], "counts": [1, 2]}):
        pass
    _job_spans(tracer)
    spans = list(exporter.get_finished_spans())

    assert _decoded(spans) == encode_spans(spans)
    assert len(_decoded(spans).resource_spans[0].scope_spans[0].spans[0].events) == 1


def test_resources_and_scopes_are_grouped_as_the_sdk_groups_them() -> None:
    first, first_spans = _provider("worker")
    second, second_spans = _provider("webhooks")
    _job_spans(first.get_tracer("clientflow.worker"))
    _job_spans(second.get_tracer("clientflow.webhooks"))
    _job_spans(first.get_tracer("redis"))
    spans = [*first_spans.get_finished_spans(), *second_spans.get_finished_spans()]

    decoded = _decoded(spans)

    assert decoded == encode_spans(spans)
    assert [len(resource.scope_spans) for resource in decoded.resource_spans] == [2, 1]


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_export_request([]) == b""
