"""structlog and standard-library loggers through the one redacting pipeline, with job context on every line."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from adapters.observability.logging import configure_logging, get_logger, job_log_context
from adapters.observability.tracing import job_span
from domain.errors import ConfigurationError
from tests.integration.observability.conftest import SpanCapture
from tests.support.canaries import API_KEY, AUTH_TOKEN, EMAIL, PAYMENT_LINK, PHONE, job_data, leaked

pytestmark = pytest.mark.usefixtures("restore_logging")


def _log_everything_inside_a_job() -> None:
    """What a job attempt logs: our structlog lines and dependency loggers, all carrying canary PII."""
    log = get_logger("adapters.bullmq.runtime")
    with (
        job_log_context("reminders", "process-reminder", "42", "org_canary"),
        job_span("reminders", "process-reminder", "42"),
    ):
        log.info("job started", data=job_data())
        log.info("sending sms", to=PHONE, body=f"pay {PAYMENT_LINK}", note=f"contact {EMAIL} at {PHONE}")
        logging.getLogger("asyncio").warning("connection to %s lost while sending to %s", "redis", PHONE)
        logging.getLogger("bullmq").error("job failed: could not reach %s", EMAIL)
        logging.getLogger("twilio.http_client").debug("-- BEGIN Twilio API Request -- auth %s", AUTH_TOKEN)
        logging.getLogger("twilio.async_http_client").debug("-- BEGIN Twilio API Request -- auth %s", AUTH_TOKEN)
        logging.getLogger("python_http_client").debug("Authorization: Bearer %s", API_KEY)
        logging.getLogger("sentry_sdk.errors").warning(
            "sending to https://k@o1.ingest.sentry.io/1?token=%s", AUTH_TOKEN
        )
        try:
            raise RuntimeError(f"provider refused {PHONE}, see {PAYMENT_LINK}")
        except RuntimeError:
            log.exception("attempt failed")


def test_job_fields_are_masked_once_bound_and_every_line_is_stamped_in_utc() -> None:
    """A producer's job id carrying a phone number is masked on every line of the job, structlog's and the standard
    library's alike; each line's timestamp is ISO 8601 UTC with microseconds, the time it was written."""
    stream = io.StringIO()
    configure_logging("info", production=True, stream=stream)
    before = datetime.now(UTC)
    with job_log_context("reminders", "process-reminder", f"reminder:{PHONE}", "org_canary"):
        get_logger("adapters.bullmq.runtime").info("job_started", attempt=1)
        logging.getLogger("bullmq").warning("lock renewal failed")
    after = datetime.now(UTC)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert leaked(stream.getvalue()) == []
    assert [line["event"] for line in lines] == ["job_started", "lock renewal failed"]
    for line in lines:
        assert line["job_id"].startswith("reminder:+14")
        stamp = datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert before - timedelta(milliseconds=1) <= stamp <= after


def test_lines_are_ascii_json_whatever_the_text() -> None:
    """Non-ASCII text and integers beyond 64 bits come out as ASCII JSON that reads back as given (a stream that
    only takes ASCII never drops a line)."""
    stream = io.StringIO()
    configure_logging("info", production=True, stream=stream)
    get_logger("adapters.bullmq.runtime").info("job_completed", outcome="envoyé ☕", count=2**70)
    get_logger("adapters.bullmq.runtime").info("job_completed", outcome="sent", count=1)

    assert stream.getvalue().isascii()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["outcome"], line["count"]) for line in lines] == [("envoyé ☕", 2**70), ("sent", 1)]


def test_production_lines_are_json_with_job_context_and_no_pii(spans: SpanCapture) -> None:
    """In production every line is JSON, lines inside a job carry queue/job/org/trace ids, no canary survives."""
    stream = io.StringIO()
    configure_logging("debug", production=True, stream=stream)
    _log_everything_inside_a_job()
    get_logger("entrypoints.worker").info("outside any job")

    output = stream.getvalue()
    assert leaked(output) == []
    lines = [json.loads(line) for line in output.splitlines()]
    events = [line["event"] for line in lines]
    assert events[:2] == ["job started", "sending sms"]
    assert any("connection to redis lost" in e for e in events)
    assert any("job failed" in e for e in events)
    assert not any("BEGIN Twilio" in e or "Authorization" in e for e in events)  # pinned to WARNING
    trace_id = spans.finished()[0].context.trace_id
    for line in lines[:-1]:
        assert line["queue"] == "reminders"
        assert line["job_name"] == "process-reminder"
        assert line["job_id"] == "42"
        assert line["org_id"] == "org_canary"
        assert line["trace_id"] == format(trace_id, "032x")
        assert {"timestamp", "level", "logger"} <= line.keys()
    assert "queue" not in lines[-1]
    assert "trace_id" not in lines[-1]
    failure = next(line for line in lines if line["event"] == "attempt failed")
    assert "RuntimeError: provider refused +14*" in failure["exception"]
    assert lines[0]["data"]["orgId"] == "org_canary"
    assert lines[0]["data"]["paymentLink"] == "[REDACTED]"


def test_development_lines_are_readable_and_redacted(spans: SpanCapture) -> None:
    """Outside production the lines are plain key=value text, redacted the same way."""
    stream = io.StringIO()
    configure_logging("info", production=False, stream=stream)
    _log_everything_inside_a_job()

    output = stream.getvalue()
    assert leaked(output) == []
    first = output.splitlines()[0]
    assert "job started" in first
    assert "job_name=process-reminder" in first
    assert "queue=reminders" in first
    assert not first.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("level", "logged"),
    [
        ("trace", {"debug", "info", "warn"}),
        ("debug", {"debug", "info", "warn"}),
        ("info", {"info", "warn"}),
        ("warn", {"warn"}),
        ("fatal", set()),
    ],
)
def test_pino_level_names_filter(level: str, logged: set[str]) -> None:
    """LOG_LEVEL takes pino's names; lines below the level are dropped."""
    stream = io.StringIO()
    configure_logging(level, production=True, stream=stream)
    log = get_logger("tests.levels")
    log.debug("debug")
    log.info("info")
    logging.getLogger("tests.levels.stdlib").warning("warn")
    assert {json.loads(line)["event"] for line in stream.getvalue().splitlines()} == logged


def test_unknown_level_is_a_configuration_error() -> None:
    """A misspelt LOG_LEVEL stops start-up with a message listing the accepted names."""
    with pytest.raises(ConfigurationError, match="LOG_LEVEL must be one of trace"):
        configure_logging("verbose", production=True)


def test_reconfiguring_replaces_the_handler() -> None:
    """A second configure_logging writes to the new stream only (one handler, no duplicate lines)."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", production=True, stream=first)
    configure_logging("info", production=True, stream=second)
    structlog.get_logger("tests.again").info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_reconfiguring_reaches_loggers_already_used() -> None:
    """Start-up configures twice (``info`` first, then ``LOG_LEVEL``): a module logger that already wrote a line
    follows the second configuration's level, stream and format."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", production=True, stream=first)
    log = structlog.get_logger("tests.cached")
    log.info("before")
    configure_logging("warn", production=False, stream=second)
    log.info("filtered")
    log.warning("after", phone=PHONE)

    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["before"]
    (line,) = second.getvalue().splitlines()
    assert "after" in line
    assert not line.startswith("{")
    assert "phone=[REDACTED]" in line


def test_one_line_per_call_from_structlog_and_the_standard_library_alike() -> None:
    """Each call writes exactly one whole line to the stream, in call order, whichever logging API wrote it."""
    stream = io.StringIO()
    configure_logging("info", production=True, stream=stream)
    log = get_logger("tests.lines")
    for number in range(3):
        log.info("structlog line", number=number)
        logging.getLogger("tests.lines.stdlib").warning("stdlib line %d", number)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["logger"]) for line in lines] == [
        (event, logger)
        for number in range(3)
        for event, logger in (("structlog line", "tests.lines"), (f"stdlib line {number}", "tests.lines.stdlib"))
    ]


class _BrokenPipe(io.StringIO):
    """The stream of a worker whose supervisord died: every write fails with EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("stream", [_BrokenPipe(), io.StringIO()], ids=["broken pipe", "closed"])
def test_a_stream_that_cannot_be_written_drops_the_line_and_the_caller_goes_on(stream: io.StringIO) -> None:
    """A worker drains after its supervisord died (tests/e2e/test_supervisor_death.py): its log lines cannot reach
    anyone, and writing one must not raise into the drain, from structlog or the standard library."""
    configure_logging("info", production=True, stream=stream)
    if not isinstance(stream, _BrokenPipe):
        stream.close()
    get_logger("tests.broken").info("draining", job_id="1")
    logging.getLogger("tests.broken.stdlib").warning("draining too")
