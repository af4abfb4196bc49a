"""One queue's worker: bullmq's ``Worker`` plus the outcome mapping, dead-lettering and a clean drain.

Outcome mapping (what bullmq does with the job):
- a handler's outcome -> completed; the return value is ``outcome.summary()``, made JSON-safe here.
- ``InvalidJob`` (unknown name, malformed data, data that is not JSON), ``DeliveryRejected`` -> failed at once
  through bullmq's ``UnrecoverableError``, then copied to ``dead-letter``.
- ``TransientError``, ``DeliveryOutcomeUnknown`` -> thrown, so the job's own ``attempts``/``backoff`` apply;
  dead-lettered once the attempts are spent. Any other exception is treated the same and logged as a bug.
- ``Deferred``, ``DeliveryRateLimited`` -> moved to delayed until the given time WITHOUT spending an attempt
  (``job.moveToDelayed`` with ``skipAttempt`` then ``DelayedError``: ``attemptsMade`` is not incremented).
- ``ConfigurationError`` -> the job is put back, delayed, without spending an attempt, and the worker stops
  with a non-zero exit so the supervisor retries and then alerts.

Observability: each attempt runs inside the job's log context (queue, job name, id, org id, trace id on every
line) and a CONSUMER span continuing the producer's trace (``opts.tm``); its outcome and durations are counted in
the ``MetricsRecorder``. A job's FINAL failure (attempts spent, unrecoverable, stalled too often) is reported to
Sentry once, from the ``failed`` event that follows bullmq's move to ``failed``; a failed attempt that will be
retried reports nothing.

``failedReason`` is ``str(exception)`` and lands in Redis: our reasons name the kind of failure and never carry
an exception text that is not ours (domain errors are PII-free by contract), and ``from None`` keeps foreign
exception texts out of the stored stack trace.

Shutdown (``drain``): stop fetching, let active jobs finish within the grace period, then close. bullmq's own
``close()`` waits only for the tasks it sees when called: a job whose fetch was in flight is processed after the
connections close and is left ``active``. Here jobs fetched after closing began are processed too, and the
connections stay open until every job has finished.

bullmq's ``Worker`` runs with the overrides of ``adapters.bullmq.patched_worker`` (the next job fetched by
``moveToFinished``, rate limits waited out, millisecond blocking waits, late jobs kept, non-JSON data failed).
"""

from __future__ import annotations

import asyncio
import time
import traceback
import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import redis.asyncio as redis_asyncio
import structlog
from bullmq import Job as BullJob
from bullmq.custom_errors import DelayedError, UnrecoverableError

from adapters.bullmq.connection import close_redis
from adapters.bullmq.dead_letter import BullmqDeadLetter, FailedJob
from adapters.bullmq.patched_worker import PatchedWorker
from adapters.bullmq.pipelined import open_pipelined_redis
from adapters.bullmq.return_values import json_safe
from adapters.bullmq.router import JobRouter
from adapters.bullmq.wire import repair_text
from adapters.bullmq.worker_config import WorkerConfig
from adapters.bullmq.worker_identity import node_worker_client_name, open_blocking_redis
from adapters.observability.logging import job_log_context
from adapters.observability.metrics import MetricsRecorder
from adapters.observability.sentry import report_final_failure
from adapters.observability.tracing import job_span, set_span_attributes
from domain.errors import (
    ConfigurationError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    InvalidJob,
    TransientError,
)
from domain.outcomes import Deferred

log = structlog.get_logger()

EXIT_OK = 0
EXIT_CRASHED = 70  # EX_SOFTWARE: the runtime itself failed
EXIT_CONFIGURATION = 78  # EX_CONFIG: misconfigured; the supervisor retries, then marks the program FATAL

LOOP_LAG_WARNING_S = 1.0


class RetryableFailure(Exception):
    """Thrown to bullmq so the job's attempts and backoff apply; its text becomes ``failedReason``."""


def _attempts_allowed(job: BullJob) -> int:
    attempts = job.opts.get("attempts") or 1
    return max(int(attempts), 1)


def _org_id(job: BullJob) -> str | None:
    """The job's org id as the producer wrote it (read before decoding, so invalid jobs carry it too), its lone
    surrogates repaired so that no log line, span or report has to encode one."""
    data = job.data
    org_id = data.get("orgId") if isinstance(data, Mapping) else None
    return repair_text(org_id) if isinstance(org_id, str) else None


def _trace_carrier(job: BullJob) -> str | None:
    carrier = job.opts.get("tm")
    return carrier if isinstance(carrier, str) else None


def _wait_seconds(job: BullJob, now_ms: int) -> float | None:
    """Added (plus its delay) to started, for a job's first start only (a retry or a deferral waits by design)."""
    if job.attemptsMade or job.attemptsStarted > 1 or not job.timestamp:
        return None
    started = int(job.processedOn or now_ms)
    delay = int(job.opts.get("delay") or 0)
    return max(started - int(job.timestamp) - delay, 0) / 1000


class _Deferral:
    """What an attempt returns when the job was moved to delayed: bullmq then needs a DelayedError."""


_DEFERRED = _Deferral()


class QueueWorker:
    """Consumes one queue until ``stop`` is set (then drains) or ``force`` is set (then leaves at once)."""

    def __init__(
        self,
        config: WorkerConfig,
        router: JobRouter,
        client: redis_asyncio.Redis,
        recorder: MetricsRecorder | None = None,
    ) -> None:
        self._config = config
        self._router = router
        self._client = client
        self._recorder = recorder or MetricsRecorder(config.prefix)
        # The domain error behind a failed attempt, for the final-failure report (bullmq hands the ``failed``
        # event our PII-free stand-in); keyed weakly by job so an attempt whose move failed leaves nothing behind.
        self._errors: weakref.WeakKeyDictionary[BullJob, BaseException] = weakref.WeakKeyDictionary()
        self._worker: PatchedWorker | None = None
        self._dead_letter = BullmqDeadLetter(client, config.prefixes)
        self._queue = str(config.queue)
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._late_tasks: set[asyncio.Task[Any]] = set()
        self._configuration_error: ConfigurationError | None = None
        self._stop = asyncio.Event()

    def active_jobs(self) -> int:
        """Jobs being processed now (for the heartbeat)."""
        if self._worker is None:
            return 0
        return len(self._worker.jobs) + len(self._late_tasks)

    async def serve(self, stop: asyncio.Event, force: asyncio.Event) -> int:
        """Run until stopped; return the process exit code."""
        blocking = open_blocking_redis(
            self._config.redis, node_worker_client_name(self._config.queue_prefix, self._queue)
        )
        pipelined = open_pipelined_redis(self._config.redis)
        try:
            options = self._config.bullmq_options(self._client)
            worker = PatchedWorker(
                self._queue, self._process, options, blocking_client=blocking, pipelined_client=pipelined
            )
            return await self._serve(worker, stop, force)
        finally:
            if pipelined is not None:
                await pipelined.aclose()
            await close_redis(blocking)

    async def _serve(self, worker: PatchedWorker, stop: asyncio.Event, force: asyncio.Event) -> int:
        worker.on("failed", self._on_failed)
        worker.on("error", self._on_error)
        self._worker = worker
        run_task = asyncio.ensure_future(worker.run())
        stop_task = asyncio.ensure_future(self._wait_either(stop))
        lag_task = asyncio.ensure_future(self._watch_loop_lag())
        log.info("worker_started", queue=self._queue, concurrency=self._config.concurrency)
        try:
            await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if not stop_task.done():
                return await self._crashed(worker, run_task)
            drained = await self._drain(worker, run_task, force)
            if drained:
                await worker.close()
            else:
                await self._force_close(worker)
            await self._finish_side_tasks()
        finally:
            stop_task.cancel()
            lag_task.cancel()
        if self._configuration_error is not None:
            return EXIT_CONFIGURATION
        log.info("worker_stopped", queue=self._queue, drained=drained)
        return EXIT_OK

    async def _wait_either(self, stop: asyncio.Event) -> None:
        """Wait for the caller's stop or our own (a ConfigurationError met by a job)."""
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _crashed(self, worker: PatchedWorker, run_task: asyncio.Future[Any]) -> int:
        error = run_task.exception() if not run_task.cancelled() else None
        log.critical(
            "worker_crashed",
            queue=self._queue,
            error_type=type(error).__name__ if error else "fetch loop ended",
            exc_info=error,
        )
        await self._force_close(worker)
        return EXIT_CRASHED

    async def _drain(self, worker: PatchedWorker, run_task: asyncio.Future[Any], force: asyncio.Event) -> bool:
        """Stop fetching and wait for every active job; False when the grace period ran out or ``force`` was set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.grace_period_s
        worker.closing = True
        if worker.waiting is not None:
            worker.waiting.cancel()
        log.info("worker_draining", queue=self._queue, active=len(worker.jobs) + len(worker.late_jobs))
        force_task = asyncio.ensure_future(force.wait())
        try:
            while True:
                while worker.late_jobs:
                    job = worker.late_jobs.pop()
                    task = asyncio.ensure_future(worker.processJob(job, job.token))
                    self._late_tasks.add(task)
                    task.add_done_callback(self._late_tasks.discard)
                pending = {t for t in (run_task, *worker.processing, *self._late_tasks) if not t.done()}
                if not pending and not worker.late_jobs:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0 or force.is_set():
                    return False
                await asyncio.wait({*pending, force_task}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            force_task.cancel()

    async def _force_close(self, worker: PatchedWorker) -> None:
        left = len(worker.jobs) + len(self._late_tasks)
        log.warning("worker_forced_close", queue=self._queue, jobs_left_active=left)
        for task in self._late_tasks:
            task.cancel()
        await worker.close(force=True)

    async def _finish_side_tasks(self) -> None:
        if self._side_tasks:
            await asyncio.wait(self._side_tasks, timeout=5.0)

    async def _watch_loop_lag(self) -> None:
        """Warn when the loop was blocked: lock renewal runs on it, and a blocked loop lets locks expire."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(1.0)
            lag = loop.time() - before - 1.0
            if lag > LOOP_LAG_WARNING_S:
                log.warning("event_loop_blocked", queue=self._queue, lag_ms=round(lag * 1000))

    # -- the processor bullmq calls ------------------------------------------------------------------------------

    async def _process(self, job: BullJob, token: str) -> Any:
        """One attempt inside its log context and span, counted in the metrics whatever its end."""
        started = time.monotonic()
        attempt = job.attemptsMade + 1
        outcome = "failed"
        result: Any = None
        try:
            with (
                job_log_context(self._queue, job.name, job.id, _org_id(job)),
                job_span(self._queue, job.name, job.id, _trace_carrier(job), attempt=attempt) as span,
            ):
                log.info("job_started", attempt=attempt, stalled_counter=job.stalledCounter)
                try:
                    result = await self._attempt(job, token)
                except Exception as error:
                    self._errors.setdefault(job, error)  # marks the attempt as counted here, not in _on_failed
                    final = isinstance(error, UnrecoverableError) or attempt >= _attempts_allowed(job)
                    outcome = "failed" if final else "retried"
                    set_span_attributes(span, {"clientflow.outcome": outcome})
                    raise
                outcome = "deferred" if result is _DEFERRED else "completed"
                detail = result.get("outcome") if isinstance(result, dict) else None
                set_span_attributes(span, {"clientflow.outcome": str(detail or outcome)})
        finally:
            wait = _wait_seconds(job, int(time.time() * 1000))
            self._recorder.job_finished(self._queue, job.name, outcome, wait, time.monotonic() - started)
        if result is _DEFERRED:
            raise DelayedError()
        return result

    async def _attempt(self, job: BullJob, token: str) -> Any:
        """Route and run the handler; map its outcome or error to what bullmq should do with the job."""
        try:
            routed = self._router.route(job.name, job.data)
        except InvalidJob as error:
            self._errors[job] = error
            raise UnrecoverableError(str(error)) from None
        if routed.unknown_keys:
            # A newer CRM may add fields: tolerated, and named (never their values) so the port can follow.
            log.info("job_has_unknown_keys", keys=list(routed.unknown_keys))
        if routed.repaired_fields:
            log.info("job_text_repaired", fields=list(routed.repaired_fields))  # lone surrogates -> U+FFFD
        try:
            outcome = await routed.handler(routed.payload)
        except (InvalidJob, DeliveryRejected) as error:
            self._errors[job] = error
            raise UnrecoverableError(f"{type(error).__name__}: {error}") from None
        except DeliveryRateLimited as error:
            return await self._defer(job, token, error.retry_at, "provider_rate_limited")
        except ConfigurationError as error:
            return await self._stop_for_configuration(job, token, error)
        except (TransientError, DeliveryOutcomeUnknown) as error:
            self._errors[job] = error
            raise RetryableFailure(f"{type(error).__name__}: {error}") from None
        except Exception as error:
            self._errors[job] = error
            log.error(
                "job_handler_bug",
                error_type=type(error).__name__,
                stack="".join(traceback.format_tb(error.__traceback__)),  # frames only: the message may hold PII
            )
            raise RetryableFailure(f"unexpected {type(error).__name__} in the handler (see the worker log)") from None
        if isinstance(outcome, Deferred):
            return await self._defer(job, token, outcome.until, outcome.reason)
        summary = json_safe(outcome.summary())
        log.info("job_completed", outcome=summary.get("outcome"), attempt=job.attemptsMade + 1)
        return summary

    async def _defer(self, job: BullJob, token: str, until: datetime, reason: str) -> _Deferral:
        await job.moveToDelayed(int(until.timestamp() * 1000), token)
        log.info("job_deferred", reason=reason, until=json_safe(until))
        return _DEFERRED

    async def _stop_for_configuration(self, job: BullJob, token: str, error: ConfigurationError) -> _Deferral:
        due = int((time.time() + self._config.configuration_error_delay_s) * 1000)
        await job.moveToDelayed(due, token)
        if self._configuration_error is None:
            self._configuration_error = error
            log.critical("worker_configuration_error", error=str(error))
            self._stop.set()
        return _DEFERRED

    # -- events ---------------------------------------------------------------------------------------------------

    def _on_failed(self, job: BullJob, error: BaseException) -> None:
        """bullmq emits ``failed`` on every failed attempt, after moving the job; only the last one is reported to
        Sentry and dead-lettered."""
        assert self._worker is not None
        if self._worker.forceClosing:
            return  # the job was not moved to failed; another worker's stalled check recovers it
        cause = self._errors.pop(job, None)
        if cause is None:  # failed before the processor ran: data not JSON, or stalled too often
            self._recorder.job_finished(self._queue, job.name, "failed", None, 0.0)
        final = isinstance(error, UnrecoverableError) or job.attemptsMade >= _attempts_allowed(job)
        org_id = _org_id(job)
        with job_log_context(self._queue, job.name, job.id, org_id):
            log.warning(
                "job_failed" if final else "job_attempt_failed", attempts_made=job.attemptsMade, reason=job.failedReason
            )
            if final:
                report_final_failure(self._queue, job.name, job.id, job.attemptsMade, org_id, cause or error)
                task = asyncio.ensure_future(self._record_dead_letter(job))  # the task keeps this log context
                self._side_tasks.add(task)
                task.add_done_callback(self._side_tasks.discard)

    async def _record_dead_letter(self, job: BullJob) -> None:
        failed = FailedJob(
            source_queue=self._queue,
            job_name=job.name,
            job_id=job.id,
            data=job.data,
            failed_reason=job.failedReason or "",
            attempts_made=job.attemptsMade,
            attempts_allowed=_attempts_allowed(job),
            created_at=job.timestamp,
            processed_on=job.processedOn or None,
            finished_on=job.finishedOn or None,
            stalled_counter=job.stalledCounter,
        )
        try:
            added = await self._dead_letter.record(failed)
        except Exception as error:
            log.error("dead_letter_failed", queue=self._queue, job_id=job.id, error_type=type(error).__name__)
            return
        if added:
            log.warning("job_dead_lettered", queue=self._queue, job_name=job.name, job_id=job.id)

    def _on_error(self, error: BaseException, job: BullJob | None = None) -> None:
        log.error(
            "worker_error",
            queue=self._queue,
            job_id=job.id if job is not None else None,
            error_type=type(error).__name__,
        )
