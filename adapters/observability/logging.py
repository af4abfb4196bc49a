"""Structured logging: structlog and every standard-library logger through one redacting pipeline.

JSON lines in production, readable lines otherwise. Inside a job each line carries the queue, job name, job id,
org id and the current trace id. Levels use the Node worker's pino names (``LOG_LEVEL``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, TextIO

import attrs
import orjson
import structlog
from opentelemetry import trace

from adapters.observability.redaction import redact_mapping
from adapters.provider_logging import pin_provider_library_logging
from domain.errors import ConfigurationError

_SILENT = logging.CRITICAL + 10
PINO_LEVELS = {
    "trace": logging.DEBUG,  # pino's finest level; nothing here logs below DEBUG
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "silent": _SILENT,
}


def level_number(name: str) -> int:
    """The logging level for a pino level name; a ConfigurationError names the accepted ones otherwise."""
    try:
        return PINO_LEVELS[name.strip().lower()]
    except KeyError:
        raise ConfigurationError(f"LOG_LEVEL must be one of {', '.join(PINO_LEVELS)}") from None


_job_fields: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar("job_fields", default=None)
"""The job fields of ``job_log_context``, redacted once when bound (not again on every line)."""


def add_job_fields(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the fields bound by ``job_log_context`` (already redacted); a field the line names itself wins."""
    fields = _job_fields.get()
    if fields:
        for key, value in fields.items():
            event.setdefault(key, value)
    return event


def add_trace_context(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the active OpenTelemetry trace and span ids, so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


_last_second: list[tuple[int, str]] = [(-1, "")]
"""The last whole second written and its ISO 8601 text (UTC), replaced as one tuple (log lines come from threads)."""


def add_timestamp(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``timestamp``: now in UTC, ISO 8601 with microseconds and ``Z`` (``2026-11-30T02:05:43.100769Z``), as
    structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it, at a third of its cost (the date and time of day
    are formatted once per second)."""
    now = time.time()
    unix = int(now)
    last_unix, text = _last_second[0]
    if unix != last_unix:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix))
        _last_second[0] = (unix, text)
    event["timestamp"] = f"{text}.{int((now - unix) * 1_000_000):06d}Z"
    return event


# Always overwritten by the processors above from the record itself, never from data: not worth scanning.
_PIPELINE_FIELDS = frozenset({"timestamp", "level", "logger"})


def redact_event(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The redaction processor: sensitive keys lose their values, free text is masked."""
    kept = {key: event.pop(key) for key in _PIPELINE_FIELDS if key in event}
    return {**redact_mapping(event), **kept}


def _shared_processors() -> list[structlog.typing.Processor]:
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        add_timestamp,
        structlog.processors.StackInfoRenderer(),
    ]


# After the redaction: values that were redacted when bound (job fields) or cannot carry PII (hex trace ids).
_AFTER_REDACTION: tuple[structlog.typing.Processor, ...] = (add_job_fields, add_trace_context)


def _dumps(event: Mapping[str, Any], **options: Any) -> str:
    """One compact JSON line in ASCII (non-ASCII text escaped, ``default`` for other objects), by orjson (a tenth of
    ``json.dumps``'s time); a line orjson writes otherwise (non-ASCII text, an integer beyond 64 bits) is written by
    ``json.dumps`` in the same form."""
    try:
        line = orjson.dumps(event, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        line = ""
    return line if line.isascii() and line else json.dumps(event, separators=(",", ":"), **options)


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler on the root logger; marked so a second ``configure_logging`` replaces it."""


@attrs.define
class _Output:
    """What ``configure_logging`` set last, read at every structlog line: a logger cached on first use keeps its
    processor list (the one list below, rewritten in place) and its ``_LineWriter``, so a second configuration
    (launch.py configures at ``info``, then at ``LOG_LEVEL``) reaches loggers already used."""

    level: int = logging.INFO
    handler: _RedactingHandler = attrs.field(factory=lambda: _RedactingHandler(sys.stderr))


_output = _Output()
_PROCESSORS: list[structlog.typing.Processor] = []
"""structlog's processor chain, one list object for the process (``configure_logging`` replaces its content)."""


_METHOD_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
    "error": logging.ERROR, "exception": logging.ERROR, "critical": logging.CRITICAL,
}  # fmt: skip


def _drop_below_level(_logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _METHOD_LEVELS.get(method, logging.CRITICAL) < _output.level:
        raise structlog.DropEvent
    return event


class _LineWriter:
    """structlog's final logger: one rendered line written to the root handler's stream under the handler's lock,
    so structlog lines and standard-library records never interleave. ``name`` is the logger's (``logger``
    field)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, line: str) -> None:
        """Write ``line``; a stream that can no longer be written (supervisord gone: EPIPE; closed at exit) drops it
        instead of raising into the caller, as ``logging.Handler.handleError`` does for standard-library records
        (a worker draining after its supervisord died must not fail on its own log lines)."""
        handler = _output.handler
        with handler.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except (OSError, ValueError):
                pass

    debug = info = warning = warn = error = exception = critical = fatal = log = msg


def _line_writer(*args: Any) -> _LineWriter:
    """The logger factory: named as ``structlog.stdlib.LoggerFactory`` names one (the given name, else the
    calling module's)."""
    return _LineWriter(structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__])(*args).name)


def configure_logging(level: str, production: bool, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library through the redacting pipeline, writing to ``stream``.

    A structlog line is rendered by structlog's processors and written as it is (no standard-library record);
    a standard-library record goes through the root handler, whose formatter runs the same processors.
    Idempotent: calling it again replaces the previous configuration (tests capture output this way).
    """
    root_level = level_number(level)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if production
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            *_AFTER_REDACTION,
            renderer,
        ],
    )
    handler = _RedactingHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RedactingHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(root_level)
    pin_provider_library_logging(root_level)
    _output.level, _output.handler = root_level, handler
    _PROCESSORS[:] = [
        _drop_below_level,
        *_shared_processors(),
        structlog.processors.format_exc_info,
        redact_event,
        *_AFTER_REDACTION,
        renderer,
    ]
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=_line_writer,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),  # the level is _drop_below_level's
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger named like a standard-library logger (``__name__``)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


@contextlib.contextmanager
def job_log_context(queue: str, job_name: str, job_id: str | None, org_id: str | None) -> Iterator[None]:
    """Every log line written inside the block (structlog or standard library) carries these job fields (redacted
    here, once: a producer's job id may carry a phone number)."""
    token = _job_fields.set(redact_mapping({"queue": queue, "job_name": job_name, "job_id": job_id, "org_id": org_id}))
    try:
        yield
    finally:
        _job_fields.reset(token)
