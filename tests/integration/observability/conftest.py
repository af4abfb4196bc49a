"""Fixtures of the observability tests: logging and tracing state restored after each test."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import attrs
import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from redis.asyncio import Redis

from adapters.observability import tracing
from tests.support.scratch import redis_prefix as shared_redis_prefix


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo ``configure_logging``: the root logger's handlers and level, pinned loggers and structlog's config."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    provider_loggers = ("twilio", "twilio.http_client", "twilio.async_http_client", "python_http_client")
    pinned = {name: logging.getLogger(name).level for name in provider_loggers}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, pinned_level in pinned.items():
            logging.getLogger(name).setLevel(pinned_level)
        structlog.reset_defaults()


@attrs.frozen
class SpanCapture:
    exporter: InMemorySpanExporter
    provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        """Flush the batch processor, then the spans it exported."""
        self.provider.force_flush()
        return list(self.exporter.get_finished_spans())


@contextlib.contextmanager
def capture_spans(sampler: Sampler = tracing.DEFAULT_SAMPLER) -> Iterator[SpanCapture]:
    """Tracing through the production code path (``sampler``, batch processor) into memory; shut down after."""
    exporter = InMemorySpanExporter()
    provider = tracing.init_tracing("clientflow-worker-test", exporter=exporter, sampler=sampler, set_global=False)
    try:
        yield SpanCapture(exporter, provider)
    finally:
        tracing.shutdown_tracing()


@pytest.fixture
def spans() -> Iterator[SpanCapture]:
    """``capture_spans`` with the default sampler, for one test."""
    with capture_spans() as capture:
        yield capture


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client of the shared Redis and a key prefix of our own, whose keys are deleted afterwards."""
    async with shared_redis_prefix() as found:
        yield found
