"""The observability wiring of the real worker runtime (run_worker, in this process): Sentry on the final failure
only, the consumer span continuing the Node producer's trace with Postgres and provider child spans, job-context
log lines, and the metrics that reach Redis."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import pytest
import sentry_sdk
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from adapters.clock import SystemClock
from adapters.messaging.outbox import OutboxSmsSender
from adapters.observability.logging import configure_logging
from adapters.observability.metrics import MetricsRecorder, read_recorded
from adapters.observability.sentry import close_sentry, init_sentry
from adapters.postgres.pool import PostgresDatabase
from domain.errors import TransientError
from domain.jobs import SnapshotJob
from domain.messages import SmsMessage
from domain.outcomes import Outcome, SnapshotStored
from domain.values import PhoneNumber
from tests.integration.observability.conftest import SpanCapture
from tests.support.builders import FAR_DEADLINE
from tests.support.canaries import FIRST_NAME, PAYMENT_LINK, PHONE, leaked
from tests.support.fakeservers.sentry import FakeSentry
from tests.support.postgres import fresh_database
from tests.support.queues import add, delete_keys, eventually, state_of, unique_prefix
from tests.support.telemetry import RunningWorker, node_add_with_telemetry, snapshot_handlers

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix()
    yield name
    await delete_keys(name)


@pytest.fixture
def captured_log() -> io.StringIO:
    """The process's log pipeline (JSON lines) writing into a buffer (restored by ``restore_logging``)."""
    stream = io.StringIO()
    configure_logging("info", production=True, stream=stream)
    return stream


@pytest.fixture
async def sentry() -> AsyncIterator[FakeSentry]:
    """The fake ingest server and the SDK pointed at it, on scopes cleared of what earlier tests left there (the
    SDK's subprocess breadcrumbs of their Node commands hold canaries in free text no masking rule recognises)."""
    server = FakeSentry()
    await server.start()
    for scope in (sentry_sdk.get_global_scope(), sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()):
        scope.clear()
    init_sentry(server.dsn, environment="test", release="clientflow-worker@test")
    try:
        yield server
    finally:
        await asyncio.to_thread(close_sentry, 1.0)
        await server.close()


async def test_only_the_final_failure_reaches_sentry(
    prefix: str, sentry: FakeSentry, captured_log: io.StringIO
) -> None:
    """A job failing both its attempts produces exactly one tagged Sentry event; a job whose failed first
    attempt is retried and then completes produces none."""
    tries: dict[str, int] = {}

    async def snapshot(job: SnapshotJob) -> Outcome:
        tries[job.org_id] = tries.get(job.org_id, 0) + 1
        if job.org_id == "org-final" or tries[job.org_id] == 1:
            raise TransientError(f"warehouse timeout for {PHONE}")
        return SnapshotStored(job.date.isoformat())

    backoff = {"type": "fixed", "delay": 50}
    worker = RunningWorker(prefix, snapshot_handlers(snapshot), MetricsRecorder(prefix))
    try:
        final = await add(prefix, "snapshots", "process-snapshots", {"orgId": "org-final", "date": "2025-07-01"},
                          attempts=2, backoff=backoff)  # fmt: skip
        retried = await add(prefix, "snapshots", "process-snapshots", {"orgId": "org-retried", "date": "2025-07-01"},
                            attempts=2, backoff=backoff)  # fmt: skip

        async def settled() -> bool:
            copy = await _key_exists(prefix, f"dead-letter:snapshots.{final}")
            return copy and await state_of(prefix, "snapshots", retried) == "completed"

        await eventually(settled)
    finally:
        assert await worker.stop() == 0
    await asyncio.to_thread(sentry_sdk.flush, 5.0)

    events = sentry.events()
    assert len(events) == 1
    (event,) = events
    assert event["tags"] == {
        "queue": "snapshots",
        "job_name": "process-snapshots",
        "attempt": "2",
        "org_id": "org-final",
    }
    assert event["contexts"]["job"]["job_id"] == final
    assert event["exception"]["values"][-1]["type"] == "TransientError"  # the domain error, not bullmq's wrapper
    assert tries == {"org-final": 2, "org-retried": 2}
    for body in sentry.raw_bodies:
        assert leaked(body) == []
    lines = [json.loads(line) for line in captured_log.getvalue().splitlines()]
    attempt_failures = [line for line in lines if line["event"] == "job_attempt_failed"]
    assert {line["org_id"] for line in attempt_failures} == {"org-final", "org-retried"}
    assert leaked(captured_log.getvalue()) == []


async def _key_exists(prefix: str, key: str) -> bool:
    client = Redis()
    try:
        return bool(await client.exists(f"{prefix}:{key}"))
    finally:
        await client.aclose()


def _descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        assert ancestor.context is not None
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


@pytest.mark.slow
async def test_node_trace_continues_through_the_worker_with_child_spans(
    prefix: str, spans: SpanCapture, captured_log: io.StringIO
) -> None:
    """A job added by Node with bullmq-otel is processed under a consumer span in the producer's trace, with a
    Postgres span and a provider span (and its own Postgres insert) beneath it; the job's log lines carry the job
    fields and the trace id; job and provider counts reach the Redis hash. No canary in any attribute or line."""
    recorder = MetricsRecorder(prefix)
    async with fresh_database("otelwiring") as dsn:
        database = await PostgresDatabase.connect(dsn)
        sms = OutboxSmsSender(database, SystemClock(), recorder)
        try:

            async def snapshot(job: SnapshotJob) -> Outcome:
                await database.fetchval("select count(*) from organizations where id = $1", job.org_id)
                body = f"Hi {FIRST_NAME}, pay at {PAYMENT_LINK}"
                await sms.send(SmsMessage(f"test:{job.org_id}", PhoneNumber(PHONE), body), FAR_DEADLINE)
                return SnapshotStored(job.date.isoformat())

            worker = RunningWorker(prefix, snapshot_handlers(snapshot), recorder)
            try:
                produced = await node_add_with_telemetry(
                    prefix, "snapshots", "process-snapshots", {"orgId": "org_canary", "date": "2025-07-01"}
                )
                await eventually(lambda: _completed(prefix, produced["jobId"]))
            finally:
                assert await worker.stop() == 0
        finally:
            await database.close()

    finished = spans.finished()
    consumer = next(s for s in finished if s.kind is SpanKind.CONSUMER)
    assert consumer.context is not None
    assert consumer.parent is not None
    assert format(consumer.context.trace_id, "032x") == produced["traceId"]
    assert format(consumer.parent.span_id, "016x") == produced["spanId"]
    assert dict(consumer.attributes or {})["clientflow.outcome"] == "snapshot_stored"
    select = next(s for s in finished if s.name == "SELECT")
    provider = next(s for s in finished if s.name == "outbox send")
    insert = next(s for s in finished if s.name == "WITH")
    assert dict(select.attributes or {}) == {"db.system.name": "postgresql", "db.operation.name": "SELECT"}
    assert _descends_from(select, consumer, finished)
    assert _descends_from(provider, consumer, finished)
    assert _descends_from(insert, provider, finished)
    assert dict(provider.attributes or {})["clientflow.outcome"] == "sent"
    assert leaked(repr([(s.name, dict(s.attributes or {}), s.events) for s in finished])) == []

    lines = [json.loads(line) for line in captured_log.getvalue().splitlines()]
    (completed,) = [line for line in lines if line["event"] == "job_completed"]
    assert completed["queue"] == "snapshots"
    assert completed["job_name"] == "process-snapshots"
    assert completed["job_id"] == produced["jobId"]
    assert completed["org_id"] == "org_canary"
    assert completed["trace_id"] == produced["traceId"]
    assert leaked(captured_log.getvalue()) == []

    client = Redis()
    try:
        samples = {(s.metric, s.labels): s.value for s in await read_recorded(client, prefix)}
    finally:
        await client.aclose()
    job_labels = (("job_name", "process-snapshots"), ("outcome", "completed"), ("queue", "snapshots"))
    assert samples[("jobs_total", job_labels)] == 1
    provider_labels = (("channel", "sms"), ("error_code", "none"), ("outcome", "sent"), ("provider", "outbox"))
    assert samples[("provider_messages_total", provider_labels)] == 1


async def _completed(prefix: str, job_id: str) -> bool:
    return await state_of(prefix, "snapshots", job_id) == "completed"
