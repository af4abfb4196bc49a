"""OpenTelemetry tracing: one CONSUMER span per job, continuing the Node producer's trace, and child spans.

npm ``bullmq`` with ``bullmq-otel`` stores the producer's W3C context in the job option ``tm`` as a JSON string of a
propagation carrier (``{"traceparent": "00-...", "tracestate": ...}``); ``job_span`` extracts it so our span's
parent is the producer's ``add`` span. Spans leave through a BatchSpanProcessor: a slow collector delays nothing.
Attributes pass through the redaction rules, so no PII reaches a span. Which traces are kept is the sampler's
choice (``sampler_named``): a sampled-out job span still has its trace and span ids (log lines carry them), it is
only neither recorded nor exported.

A collector that is down or does not answer costs spans, never jobs: the processor's queue is bounded
(``max_queue_size``, beyond which spans are dropped); an outage is one ``tracing_export_failed`` line and one
``tracing_export_recovered`` (with the count of spans in the exports given up), not the exporter's line per retry
and per batch; ``shutdown_tracing`` waits for the collector no longer than it is told.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import attrs
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from adapters.observability.redaction import is_sensitive_key, redact_text

log = structlog.get_logger()

INSTRUMENTATION_NAME = "clientflow.worker"
MESSAGING_SYSTEM = "bullmq"  # not in the conventions' list of well-known systems: the library's own name
_PROPAGATOR = TraceContextTextMapPropagator()
# Convention keys whose last segment reads like PII ("name", "address") but names a system, not a person.
_CONVENTION_KEYS = frozenset(
    {
        "db.system.name", "db.operation.name", "db.collection.name", "db.namespace", "db.query.summary",
        "db.query.text", "server.address", "network.peer.address", "messaging.destination.name",
        "messaging.operation.name", "rpc.service", "rpc.method", "http.request.method", "url.scheme", "url.path",
        "error.type", "gen_ai.operation.name", "gen_ai.provider.name",
    }
)  # fmt: skip


# The SDK's own lines about a collector that is down: one per retry and per failed batch ("Transient error ...
# retrying", "Failed to export spans batch ..."), and "Queue full, dropping Span."; _ReportedExporter says it once.
_EXPORT_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.sdk._shared_internal")


class _ReportedExporter(SpanExporter):
    """``inner`` with its failures reported once per outage, and a ``stop`` after which batches are dropped at once
    (and the inner exporter's retries abandoned), so a shutdown does not wait on a dead collector."""

    def __init__(self, inner: SpanExporter, endpoint: str | None) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.failing = False
        self.failed_spans = 0
        self.stopped = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = SpanExportResult.FAILURE
        if not self.stopped:
            with contextlib.suppress(Exception):  # an exporter that raises failed (the SDK's line on it is silenced)
                result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            if self.failing:
                log.info("tracing_export_recovered", spans_failed=self.failed_spans)
                self.failing, self.failed_spans = False, 0
            return result
        self.failed_spans += len(spans)
        if not self.failing:
            self.failing = True
            log.warning("tracing_export_failed", endpoint=self.endpoint, spans_failed=len(spans))
        return result

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.inner.shutdown()

    def shutdown(self) -> None:
        self.stop()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        flushed: bool = self.inner.force_flush(timeout_millis)
        return flushed


def _where(endpoint: str | None) -> str | None:
    """The endpoint's scheme, host and port only: a URL may carry credentials, and logs must not."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


# OTEL_TRACES_SAMPLER's root samplers (sampler_named), each given OTEL_TRACES_SAMPLER_ARG.
_ROOT_SAMPLERS: dict[str, Callable[[float], Sampler]] = {
    "always_on": lambda _ratio: ALWAYS_ON,
    "always_off": lambda _ratio: ALWAYS_OFF,
    "traceidratio": TraceIdRatioBased,
}
_PARENT_BASED = "parentbased_"
DEFAULT_SAMPLER: Sampler = ParentBased(ALWAYS_ON)
"""``parentbased_always_on``: the specification's default, and the SDK's when it is given no sampler."""


def sampler_named(name: str, ratio: float = 1.0) -> Sampler:
    """The SDK sampler ``OTEL_TRACES_SAMPLER`` names, with ``OTEL_TRACES_SAMPLER_ARG`` as ``ratio``.

    Names and meanings are the OpenTelemetry SDK environment variable specification's
    (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration):
    ``always_on``, ``always_off``, ``traceidratio`` (keeps the share ``ratio``, 0 to 1, of traces, decided on the
    trace id alone, so every service of one trace decides alike; ``ratio`` is ignored by the other two), and each of
    them as ``parentbased_<name>``: a span with a parent (a job's span under the Node producer's context from ``tm``)
    is sampled exactly when its parent was, and ``<name>`` decides only for a root span.

    Raises ValueError on another name (the specification's ``jaeger_remote`` and ``xray`` are not in the Python SDK)
    or, for a ``traceidratio`` sampler, a ratio outside 0..1.
    """
    root = _ROOT_SAMPLERS.get(name.removeprefix(_PARENT_BASED))
    if root is None:
        raise ValueError(f"unknown trace sampler {name!r}")
    return ParentBased(root(ratio)) if name.startswith(_PARENT_BASED) else root(ratio)


@attrs.define
class _TracingState:
    provider: TracerProvider | None = None
    exporter: _ReportedExporter | None = None
    tracer: trace.Tracer | None = None
    """The provider's tracer for our instrumentation scope, made once (``get_tracer`` builds a new one per call)."""


_state = _TracingState()


def init_tracing(
    service_name: str,
    *,
    endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    export_timeout_seconds: float = 10.0,
    max_queue_size: int = 2048,
    sampler: Sampler = DEFAULT_SAMPLER,
    set_global: bool = True,
) -> TracerProvider:
    """Start exporting spans in batches to ``exporter``, or to OTLP/HTTP at ``endpoint`` + ``/v1/traces``.

    ``endpoint`` is ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the collector's base URL). At most ``max_queue_size`` ended
    spans wait for export; more are dropped. ``sampler`` (``sampler_named``) decides which spans are recorded and
    exported; it is always given to the provider, so the SDK never reads ``OTEL_TRACES_SAMPLER`` from the environment
    behind the settings' back. With ``set_global`` the provider also becomes OpenTelemetry's global one, for
    libraries that trace through the API.
    """
    if exporter is None:
        if not endpoint:
            raise ValueError("init_tracing needs an endpoint or an exporter")
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=export_timeout_seconds)
    resource_attributes: dict[str, str] = {"service.name": service_name}
    if service_version:
        resource_attributes["service.version"] = service_version
    if environment:
        resource_attributes["deployment.environment.name"] = environment
    provider = TracerProvider(sampler=sampler, resource=Resource.create(resource_attributes))
    for name in _EXPORT_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    reported = _ReportedExporter(exporter, _where(endpoint))
    provider.add_span_processor(
        BatchSpanProcessor(reported, max_queue_size=max_queue_size, export_timeout_millis=export_timeout_seconds * 1000)
    )
    _state.provider, _state.exporter = provider, reported
    _state.tracer = provider.get_tracer(INSTRUMENTATION_NAME)
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def shutdown_tracing(timeout_seconds: float = 5.0) -> None:
    """Export what is buffered for up to ``timeout_seconds`` (plus one request in flight, at most the export
    timeout), drop the rest and stop; call on shutdown."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    exporter, _state.exporter = _state.exporter, None
    if provider is None or exporter is None:
        return
    if not exporter.failing:  # a collector known to be down is not waited for
        # The SDK's force_flush ignores its timeout (opentelemetry-python#4568): it runs aside, waited for so long.
        flush = threading.Thread(target=provider.force_flush, name="tracing-flush", daemon=True)
        flush.start()
        flush.join(timeout_seconds)
    exporter.stop()
    provider.shutdown()


# Without ``init_tracing``: the API's proxy, which follows a global provider once one is set (no-op spans until then).
_GLOBAL_TRACER = trace.get_tracer(INSTRUMENTATION_NAME)


def _tracer() -> trace.Tracer:
    return _state.tracer if _state.tracer is not None else _GLOBAL_TRACER


def safe_attributes(attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
    """Drop sensitive keys and mask PII inside string values."""
    safe: dict[str, AttributeValue] = {}
    for key, value in (attributes or {}).items():
        if key not in _CONVENTION_KEYS and (is_sensitive_key(key) or is_sensitive_key(key.rsplit(".", 1)[-1])):
            continue
        if isinstance(value, str):
            safe[key] = redact_text(value)
        elif isinstance(value, list | tuple):
            safe[key] = [redact_text(item) if isinstance(item, str) else item for item in value]
        else:
            safe[key] = value
    return safe


def set_span_attributes(span: Span, attributes: Mapping[str, AttributeValue]) -> None:
    """Add attributes (an outcome, a count) to a span through the redaction rules (nothing to do on a span that
    records nothing: tracing off)."""
    if span.is_recording():
        span.set_attributes(safe_attributes(attributes))


def producer_context(opts_tm: str | None) -> otel_context.Context | None:
    """The producer's context from a job's ``tm`` option; None when absent or unreadable."""
    if not opts_tm:
        return None
    try:
        carrier = json.loads(opts_tm)
    except ValueError:
        return None
    if not isinstance(carrier, dict):
        return None
    carrier = {str(k): str(v) for k, v in carrier.items() if isinstance(v, str)}
    extracted = _PROPAGATOR.extract(carrier, context=otel_context.Context())
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


def _record_failure(span: Span, exc: BaseException) -> None:
    """``Span.record_exception`` without PII: the message and traceback are masked first."""
    span.add_event(
        "exception",
        {
            "exception.type": type(exc).__qualname__,
            "exception.message": redact_text(str(exc)),
            "exception.stacktrace": redact_text("".join(traceback.format_exception(exc))),
        },
    )
    span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))


@contextlib.contextmanager
def _run_span(
    name: str, kind: SpanKind, attributes: dict[str, AttributeValue], parent: otel_context.Context | None
) -> Iterator[Span]:
    """The span, current inside the block, ended after it (``start_as_current_span`` and ``use_span`` in one
    frame: two generator layers fewer per job)."""
    span = _tracer().start_span(
        name, context=parent, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    except Exception as exc:
        _record_failure(span, exc)
        raise
    finally:
        otel_context.detach(token)
        span.end()


def job_span(
    queue: str, job_name: str, job_id: str | None, opts_tm: str | None = None, attempt: int | None = None
) -> contextlib.AbstractContextManager[Span]:
    """The CONSUMER span of one job attempt ("process <queue>"), child of the producer's span when ``opts_tm``
    carries its context; current inside the ``with`` block. Exceptions are recorded (masked) and re-raised."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "bullmq.job.name": job_name,
    }
    if job_id is not None:
        attributes["messaging.message.id"] = job_id
    if attempt is not None:
        attributes["bullmq.job.attempt"] = attempt
    return _run_span(f"process {queue}", SpanKind.CONSUMER, attributes, producer_context(opts_tm))


@contextlib.contextmanager
def child_span(
    name: str, kind: SpanKind = SpanKind.CLIENT, attributes: Mapping[str, AttributeValue] | None = None
) -> Iterator[Span]:
    """A span under the current one for a Postgres, Redis or provider call (use the conventions' names:
    ``db.system.name``, ``db.operation.name``, ``server.address``, ...). Attributes are redacted."""
    with _run_span(name, kind, safe_attributes(attributes), None) as span:
        yield span


def current_trace_id() -> str | None:
    """The active trace id as 32 hex digits, for a job's return value or a log line; None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
