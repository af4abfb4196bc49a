"""The OTLP collector down: tracing through the real OTLP/HTTP exporter to a port nothing listens on costs spans,
never memory beyond the queue's bound, and says so in one log line; a collector coming back gets spans again and
one line with the count lost meanwhile."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan

from adapters.observability import tracing
from adapters.observability.logging import configure_logging
from adapters.observability.tracing import job_span
from tests.support.fakeservers.otlp import FakeOtlpCollector
from tests.support.queues import free_port

pytestmark = pytest.mark.usefixtures("restore_logging")

QUEUE_BOUND = 1024
BATCH = 512  # the batch processor's max_export_batch_size: spans taken from the queue for the export in progress


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the process logs, as production writes it (JSON lines); tracing shut down afterwards."""
    stream = io.StringIO()
    configure_logging("info", production=True, stream=stream)
    try:
        yield stream
    finally:
        tracing.shutdown_tracing(1.0)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def spans_alive() -> int:
    gc.collect()
    return sum(1 for found in gc.get_objects() if isinstance(found, ReadableSpan))


async def _jobs(count: int, seconds: float) -> None:
    """``count`` job spans spread over ``seconds``, as a busy worker ends them."""
    for index in range(count):
        with job_span("reminders", "process-reminder", str(index), attempt=1):
            pass
        if index % 100 == 99:
            await asyncio.sleep(seconds * 100 / count)


@pytest.mark.slow
async def test_a_refusing_collector_costs_spans_not_memory_and_is_one_log_line_then_recovery_one_more(
    log_lines: io.StringIO,
) -> None:
    """5,000 job spans over 10 s while nothing listens at the endpoint: at most the queue's bound plus one batch of
    spans is held at any time, the log has one ``tracing_export_failed`` line and none of the exporter's own; once a
    collector listens there, spans reach it and one ``tracing_export_recovered`` line counts the spans given up."""
    port = free_port()
    tracing.init_tracing(
        "clientflow-worker", endpoint=f"http://127.0.0.1:{port}", max_queue_size=QUEUE_BOUND, set_global=False
    )
    held = []
    for _ in range(5):
        await _jobs(1000, 2.0)
        held.append(spans_alive())
    assert max(held) <= QUEUE_BOUND + BATCH, held
    down = lines(log_lines)
    assert [(line["event"], line["level"]) for line in down] == [("tracing_export_failed", "warning")]
    assert down[0]["endpoint"] == f"http://127.0.0.1:{port}"

    collector = FakeOtlpCollector()
    runner = web.AppRunner(collector.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        deadline = time.monotonic() + 60  # the exporter's retry in progress (backoff up to 10 s) ends first
        while not any(line["event"] == "tracing_export_recovered" for line in lines(log_lines)):
            assert time.monotonic() < deadline, lines(log_lines)
            await _jobs(100, 0.5)
    finally:
        await runner.cleanup()
    events = [line["event"] for line in lines(log_lines)]
    assert events == ["tracing_export_failed", "tracing_export_recovered"]
    assert lines(log_lines)[1]["spans_failed"] >= BATCH  # at least a batch was given up (the queue dropped more)
    assert collector.spans()
