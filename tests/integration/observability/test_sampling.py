"""OTEL_TRACES_SAMPLER(_ARG) through the real OpenTelemetry SDK: which job spans are exported, that a parent-based
sampler follows the Node producer's decision, and that a sampled-out job still logs and counts in the metrics."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pathlib
import sys
from collections.abc import AsyncIterator

import pytest
from bullmq import Job as BullJob
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import Sampler
from redis.asyncio import Redis

from adapters.observability import tracing
from adapters.observability.logging import configure_logging
from adapters.observability.metrics import MetricsRecorder, read_recorded
from adapters.observability.tracing import child_span, current_trace_id, job_span, sampler_named, set_span_attributes
from domain.jobs import SnapshotJob
from domain.outcomes import Outcome, SnapshotStored
from entrypoints.settings import Settings
from tests.integration.observability.conftest import capture_spans
from tests.support.canaries import job_data
from tests.support.fakeservers.otlp import FakeOtlpCollector
from tests.support.queues import add, delete_keys, eventually, state_of, unique_prefix
from tests.support.telemetry import RunningWorker, consume_one, node_add_with_telemetry, snapshot_handlers

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _tm(trace_id: int, *, sampled: bool) -> str:
    """A job's ``tm`` option as bullmq-otel writes it: a W3C traceparent whose flags say whether the producer
    sampled its span (``01``) or not (``00``)."""
    return json.dumps({"traceparent": f"00-{trace_id:032x}-{0x00F067AA0BA902B7:016x}-{'01' if sampled else '00'}"})


def _sampler(environ: dict[str, str]) -> Sampler:
    """The sampler a process builds from these variables (the settings, then ``sampler_named``, as observe does)."""
    settings = Settings.from_env(environ)
    return sampler_named(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)


def _job_ids(spans: list[ReadableSpan]) -> list[str]:
    return sorted(
        str((span.attributes or {})["messaging.message.id"]) for span in spans if span.name.startswith("process")
    )


async def test_parent_based_at_ratio_zero_keeps_exactly_the_jobs_the_node_producer_sampled(
    redis_prefix: tuple[Redis, str],
) -> None:
    """parentbased_traceidratio at 0: a job with no producer context is not exported; a job a real Node producer
    traced (a sampled traceparent in ``opts.tm``) is, child span included, in the producer's trace; a producer
    context marked not sampled is not exported either. The Node CRM's decision wins both ways."""
    _, prefix = redis_prefix
    produced = await node_add_with_telemetry(prefix, "reminders", "process-reminder", job_data())
    assert json.loads(produced["tm"])["traceparent"].endswith("-01")  # the Node SDK's default sampler kept it

    def handle(job: BullJob) -> None:
        with job_span("reminders", job.name, job.id, job.opts.get("tm")), child_span("SELECT contacts"):
            pass

    sampler = _sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"})
    with capture_spans(sampler) as spans:
        await consume_one(prefix, "reminders", handle)
        with job_span("reminders", "process-reminder", "no-context"), child_span("SELECT contacts"):
            pass
        with job_span("reminders", "process-reminder", "not-sampled", _tm(0xA1, sampled=False)):
            pass
        finished = spans.finished()

    assert _job_ids(finished) == [produced["jobId"]]
    assert sorted(span.name for span in finished) == ["SELECT contacts", "process reminders"]
    assert {format(span.context.trace_id, "032x") for span in finished if span.context} == {produced["traceId"]}


@pytest.mark.parametrize(
    ("name", "unsampled_parent_kept"), [("traceidratio", True), ("parentbased_traceidratio", False)]
)
def test_at_ratio_one_every_trace_is_exported(name: str, unsampled_parent_kept: bool) -> None:
    """At OTEL_TRACES_SAMPLER_ARG=1 every job span and its child is exported. ``traceidratio`` decides on the trace
    id alone, so it keeps even a job whose producer did not sample (the default, parent-based, drops that one)."""
    with capture_spans(_sampler({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "1"})) as spans:
        for job_id in range(20):
            with job_span("snapshots", "process-snapshots", f"job-{job_id:02}"), child_span("SELECT"):
                pass
        with job_span("snapshots", "process-snapshots", "not-sampled", _tm(0xB2, sampled=False)):
            pass
        finished = spans.finished()

    expected = [f"job-{job_id:02}" for job_id in range(20)] + (["not-sampled"] if unsampled_parent_kept else [])
    assert _job_ids(finished) == sorted(expected)
    assert [span.name for span in finished].count("SELECT") == 20


def test_the_ratio_is_the_share_of_trace_ids_kept() -> None:
    """traceidratio at 0.25 keeps a trace whose id's lower 64 bits are below 0.25 x 2^64 and drops one above (the
    SDK's TraceIdRatioBased rule), whatever the producer decided."""
    low, high = int(0.2 * 2**64), int(0.3 * 2**64)
    with capture_spans(_sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})) as spans:
        for job_id, trace_id in (("low", low), ("high", high)):
            with job_span("nurture", "process-nurture", job_id, _tm(trace_id, sampled=False)):
                pass
        finished = spans.finished()

    assert _job_ids(finished) == ["low"]


async def test_always_off_exports_nothing_to_the_collector() -> None:
    """always_off: no span reaches the OTLP collector, not even one under a sampled producer context (attributes
    set on the non-recording spans are no error); ``always_on`` then sends the next job's span to the same one."""
    collector = FakeOtlpCollector()
    await collector.start()
    try:
        tracing.init_tracing("clientflow-worker", endpoint=collector.base_url, sampler=sampler_named("always_off"),
                             set_global=False)  # fmt: skip
        with job_span("dunning", "process-dunning", "d-1") as span, child_span("SELECT invoices"):
            set_span_attributes(span, {"clientflow.outcome": "sent"})
        with job_span("dunning", "process-dunning", "d-2", _tm(0xC3, sampled=True)):
            pass
        await asyncio.to_thread(tracing.shutdown_tracing, 10.0)
        assert collector.spans() == []

        tracing.init_tracing("clientflow-worker", endpoint=collector.base_url, sampler=sampler_named("always_on"),
                             set_global=False)  # fmt: skip
        with job_span("dunning", "process-dunning", "d-3"):
            pass
        await asyncio.to_thread(tracing.shutdown_tracing, 10.0)
    finally:
        await collector.close()
    assert [span.name for _, span in collector.spans()] == ["process dunning"]


_OBSERVE_ONE_JOB = """
import pathlib, sys
from entrypoints import settings
settings.ENV_FILE = pathlib.Path(sys.argv[1])
from adapters.observability.tracing import job_span
from entrypoints.bootstrap import observe, stop_observing
observe(settings.Settings.from_env(), process="test")
with job_span("snapshots", "process-snapshots", "1"):
    pass
stop_observing()
"""


@pytest.mark.parametrize(("dot_env", "exported"), [("OTEL_TRACES_SAMPLER=always_off\n", 0), ("", 1)])
async def test_a_sampler_set_in_dot_env_is_the_one_the_process_uses(
    tmp_path: pathlib.Path, dot_env: str, exported: int
) -> None:
    """A process set up by ``observe`` exports with the sampler of its settings, here from ``.env`` alone (the SDK
    by itself reads only the environment, and so ignored it): always_off sends nothing; unset, the job's span."""
    env_file = tmp_path / ".env"
    env_file.write_text(dot_env, encoding="utf-8")
    collector = FakeOtlpCollector()
    await collector.start()
    try:
        environ = {"PATH": os.environ.get("PATH", ""), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OBSERVE_ONE_JOB, str(env_file), cwd=ROOT, env=environ, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
    finally:
        await collector.close()
    assert [span.name for _, span in collector.spans()] == ["process snapshots"] * exported


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix()
    yield name
    await delete_keys(name)


@pytest.mark.usefixtures("restore_logging")
async def test_a_sampled_out_job_still_logs_with_its_fields_and_counts_in_the_metrics(prefix: str) -> None:
    """The real worker runtime, parentbased_traceidratio at 0, a job the Node CRM added without tracing: no span is
    exported, yet the job's log lines carry its queue, name, id, org and a trace id, and jobs_total counts it."""
    stream = io.StringIO()
    configure_logging("info", production=True, stream=stream)
    trace_ids: list[str | None] = []

    async def snapshot(job: SnapshotJob) -> Outcome:
        trace_ids.append(current_trace_id())
        return SnapshotStored(job.date.isoformat())

    recorder = MetricsRecorder(prefix)
    sampler = _sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"})
    with capture_spans(sampler) as spans:
        worker = RunningWorker(prefix, snapshot_handlers(snapshot), recorder)
        try:
            job_id = await add(
                prefix, "snapshots", "process-snapshots", {"orgId": "org-unsampled", "date": "2025-07-01"}
            )

            async def completed() -> bool:
                return await state_of(prefix, "snapshots", job_id) == "completed"

            await eventually(completed)
        finally:
            assert await worker.stop() == 0
        assert spans.finished() == []

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    job_lines = [line for line in lines if line["event"] in ("job_started", "job_completed")]
    assert [line["event"] for line in job_lines] == ["job_started", "job_completed"]
    for line in job_lines:
        assert (line["queue"], line["job_name"], line["job_id"], line["org_id"]) == (
            "snapshots", "process-snapshots", job_id, "org-unsampled",
        )  # fmt: skip
        assert line["trace_id"] == trace_ids[0]
    assert trace_ids[0] is not None
    client = Redis()
    try:
        samples = {(s.metric, s.labels): s.value for s in await read_recorded(client, prefix)}
    finally:
        await client.aclose()
    assert (
        samples[("jobs_total", (("job_name", "process-snapshots"), ("outcome", "completed"), ("queue", "snapshots")))]
        == 1
    )
