"""The composition root: opens the adapters from Settings, builds the domain services, closes all in reverse.

Every process main (worker, CLI, demo) and the integration tests build the system here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TypeVar

import attrs
import redis.asyncio as redis_asyncio
import structlog

from adapters.bullmq.connection import RedisSettings, close_redis, open_redis
from adapters.bullmq.publisher import BullmqJobPublisher, Retention
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.clock import SystemClock
from adapters.observability.logging import configure_logging
from adapters.observability.metrics import MetricsRecorder
from adapters.observability.sentry import close_sentry, init_sentry
from adapters.observability.tracing import init_tracing, shutdown_tracing
from adapters.outbox import OutboxEmailSender, OutboxSmsSender
from adapters.postgres.crm import (
    PostgresAppointments,
    PostgresContacts,
    PostgresInvoices,
    PostgresOrganizations,
    PostgresTemplates,
)
from adapters.postgres.kpi import PostgresKpiFacts
from adapters.postgres.ledger import PostgresSendLedger
from adapters.postgres.migrator import migrate
from adapters.postgres.nurture import PostgresNurtureEnrollments
from adapters.postgres.pool import PostgresDatabase
from adapters.postgres.snapshots import PostgresSnapshotStore
from adapters.rate_limit import RedisRateLimiter
from adapters.scheduling.cron import install_zoned_repeat_strategy
from adapters.scheduling.schedules import Schedule, define_schedules, find_schedule, sync_schedules
from adapters.scheduling.status import ScheduleRunRecorder
from adapters.sendgrid_email import SendGridEmailSender
from adapters.template_renderer import PlaceholderTemplateRenderer
from adapters.twilio_sms import TWILIO_API_BASE_URL, TwilioSmsSender
from domain.delivery import Dispatcher
from domain.dunning import DunningService
from domain.errors import TransientError
from domain.jobs import Job, JobName, QueueName
from domain.nurture import NurtureService
from domain.outcomes import Outcome
from domain.ports import EmailSender, SmsSender
from domain.reconciliation import StuckSendReconciler
from domain.reminders import ReminderService
from domain.snapshots import SnapshotService
from domain.values import EmailAddress
from entrypoints.settings import Settings

log = structlog.get_logger()

# Completed reminder jobs must outlive the hourly scans that could queue them again (up to ~27 h before the
# appointment); other finished jobs are kept a day, failed ones two weeks.
RETENTION = Retention(completed_age_s=48 * 3600)
RECONCILE_INTERVAL_S = 300.0

J = TypeVar("J", bound=Job)


def _handler(method: Callable[[J], Awaitable[Outcome]]) -> Handler:
    """Adapt a service method taking one payload type to the router's Handler (the router decodes the type)."""

    async def handle(job: Job) -> Outcome:
        return await method(job)  # type: ignore[arg-type]  # the router hands each name its own payload type

    return handle


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings(host=settings.redis_host, port=settings.redis_port, password=settings.redis_password)


def observe(settings: Settings, process: str) -> None:
    """Logging, Sentry and tracing for this process, as configured (each optional but logging)."""
    configure_logging(settings.log_level, settings.production)
    if settings.sentry_dsn:
        init_sentry(settings.sentry_dsn, environment=settings.node_env, release=settings.release, server_name=process)
    if settings.otel_endpoint:
        init_tracing(
            "clientflow-worker",
            endpoint=settings.otel_endpoint,
            service_version=settings.release,
            environment=settings.node_env,
        )


def stop_observing() -> None:
    """Export the buffered spans and send the queued Sentry events (each bounded in time)."""
    shutdown_tracing(5.0)
    close_sentry(2.0)


@attrs.define
class System:
    """Every service of the worker, wired to real adapters."""

    settings: Settings
    database: PostgresDatabase
    redis: redis_asyncio.Redis
    schedules: tuple[Schedule, ...]
    metrics: MetricsRecorder
    """Counts of this process (provider messages here, jobs in the worker), flushed to Redis by the worker."""
    reminders: ReminderService
    nurture: NurtureService
    dunning: DunningService
    snapshots: SnapshotService
    recorder: ScheduleRunRecorder
    reconciler: StuckSendReconciler
    """Settles SMS sends left unsettled after their jobs ended (run by the reminder workers: ``_reconciling``)."""

    def handlers(self, queue: QueueName) -> Mapping[JobName, Handler]:
        """The handlers of one queue's jobs; scheduled jobs record their runs for the status endpoints."""
        scan = self.recorder.wrap(find_schedule(self.schedules, "scan-appointments"), self.reminders.scan)
        fan_out = self.recorder.wrap(find_schedule(self.schedules, "fan-out-snapshots"), self.snapshots.fan_out)
        by_queue: dict[QueueName, dict[JobName, Handler]] = {
            QueueName.REMINDERS: {
                JobName.REMINDER: _handler(self.reminders.process),
                JobName.SCAN_APPOINTMENTS: _handler(scan),
            },
            QueueName.NURTURE: {JobName.NURTURE: _handler(self.nurture.process)},
            QueueName.DUNNING: {JobName.DUNNING: _handler(self.dunning.process)},
            QueueName.SNAPSHOTS: {
                JobName.SNAPSHOT: _handler(self.snapshots.compute),
                JobName.FAN_OUT_SNAPSHOTS: _handler(fan_out),
            },
        }
        return by_queue[queue]


def _senders(
    settings: Settings,
    database: PostgresDatabase,
    redis: redis_asyncio.Redis,
    clock: SystemClock,
    metrics: MetricsRecorder,
) -> tuple[SmsSender, EmailSender, list[Callable[[], Awaitable[None]]]]:
    """Twilio and SendGrid when configured, else the local outbox (refused in production by Settings.check)."""
    closers: list[Callable[[], Awaitable[None]]] = []
    keys = f"{settings.bullmq_prefix}:cf"  # our own Redis keys live beside the queues' (one deployment, one prefix)
    sms: SmsSender
    email: EmailSender
    if settings.twilio_configured:
        assert settings.twilio_account_sid is not None
        assert settings.twilio_auth_token is not None
        twilio = TwilioSmsSender(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            sender=settings.twilio_messaging_service_sid or settings.twilio_from_number or "",
            redis=redis,
            clock=clock,
            status_callback_url=settings.twilio_status_callback_url,
            rate_limiter=RedisRateLimiter(redis, f"{keys}:ratelimit:twilio", settings.sms_per_second, clock),
            base_url=settings.twilio_base_url or TWILIO_API_BASE_URL,
            record_prefix=f"{keys}:twilio:sent",
            recorder=metrics,
        )
        closers.append(twilio.close)
        sms = twilio
    else:
        sms = OutboxSmsSender(database, clock, metrics)
    if settings.sendgrid_configured:
        assert settings.sendgrid_api_key is not None
        assert settings.sendgrid_from_email is not None
        sendgrid = SendGridEmailSender(
            api_key=settings.sendgrid_api_key,
            from_email=EmailAddress(settings.sendgrid_from_email),
            clock=clock,
            rate_limiter=RedisRateLimiter(redis, f"{keys}:ratelimit:sendgrid", settings.email_per_second, clock),
            recorder=metrics,
        )
        if settings.sendgrid_host:
            sendgrid = attrs.evolve(sendgrid, host=settings.sendgrid_host)
        email = sendgrid
    else:
        email = OutboxEmailSender(database, clock, metrics)
    return sms, email, closers


@asynccontextmanager
async def open_system(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[System]:
    """Open every adapter (migrating the database first), yield the wired System, close all in reverse."""
    async with AsyncExitStack() as stack:
        clock = SystemClock()
        if run_migrations:
            applied = await migrate(settings.database_url)
            if applied:
                log.info("migrations_applied", versions=applied)
        database = await PostgresDatabase.connect(settings.database_url)
        stack.push_async_callback(database.close)
        redis = open_redis(redis_settings(settings))
        stack.push_async_callback(close_redis, redis)
        metrics = MetricsRecorder(settings.bullmq_prefix)
        sms, email, closers = _senders(settings, database, redis, clock, metrics)
        for close in closers:
            stack.push_async_callback(close)

        organizations = PostgresOrganizations(database)
        contacts = PostgresContacts(database)
        appointments = PostgresAppointments(database)
        templates = PostgresTemplates(database)
        ledger = PostgresSendLedger(database)
        renderer = PlaceholderTemplateRenderer()
        publisher = BullmqJobPublisher(redis, settings.bullmq_prefix, clock, RETENTION)
        dispatcher = Dispatcher(ledger, sms, email, clock, settle=timedelta(seconds=settings.send_settle_seconds))
        schedules = define_schedules(settings.scan_cron, settings.snapshot_cron, settings.schedule_tz)
        yield System(
            settings=settings,
            database=database,
            redis=redis,
            schedules=schedules,
            metrics=metrics,
            reminders=ReminderService(
                appointments, contacts, organizations, templates, renderer, publisher, dispatcher, clock
            ),
            nurture=NurtureService(
                PostgresNurtureEnrollments(database),
                contacts,
                organizations,
                appointments,
                templates,
                renderer,
                ledger,
                dispatcher,
                publisher,
                clock,
            ),
            dunning=DunningService(
                contacts, organizations, PostgresInvoices(database), templates, renderer, dispatcher, clock
            ),
            snapshots=SnapshotService(
                organizations, PostgresKpiFacts(database), PostgresSnapshotStore(database), clock, publisher
            ),
            recorder=ScheduleRunRecorder(redis, settings.bullmq_prefix, clock),
            reconciler=StuckSendReconciler(
                ledger, sms, clock, stuck_after=timedelta(seconds=settings.owed_after_seconds)
            ),
        )


def worker_config(settings: Settings, queue: QueueName) -> WorkerConfig:
    return WorkerConfig(
        queue=queue,
        redis=redis_settings(settings),
        prefix=settings.bullmq_prefix,
        concurrency=settings.worker_concurrency,
        lock_duration_ms=settings.lock_duration_ms,
        stalled_interval_ms=settings.stalled_interval_ms,
        max_stalled_count=settings.max_stalled_count,
        grace_period_s=settings.worker_grace_seconds,
    )


@asynccontextmanager
async def worker_components(
    queue: QueueName,
) -> AsyncIterator[tuple[WorkerConfig, Mapping[JobName, Handler], MetricsRecorder]]:
    """What ``python -m entrypoints.worker --queue <name>`` runs: config, handlers and the process's metrics
    recorder (the adapters count into it; the worker flushes it) for one queue's worker.

    Every worker upserts the schedules at start-up (idempotent, safe concurrently), so no process is special.
    """
    settings = Settings.from_env()
    observe(settings, process=f"worker-{queue}")
    log.info("worker_starting", queue=str(queue), **settings.describe())
    install_zoned_repeat_strategy()
    try:
        async with open_system(settings) as system:
            report = await sync_schedules(system.redis, settings.bullmq_prefix, system.schedules)
            log.info("schedules_synced", report=str(report))
            async with _reconciling(system, queue):
                yield worker_config(settings, queue), system.handlers(queue), system.metrics
    finally:
        stop_observing()


@asynccontextmanager
async def _reconciling(system: System, queue: QueueName) -> AsyncIterator[None]:
    """In reminder workers, a pass of ``system.reconciler`` every RECONCILE_INTERVAL_S while the block runs."""
    if queue is not QueueName.REMINDERS:
        yield
        return
    task = asyncio.ensure_future(_reconcile_forever(system.reconciler))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reconcile_forever(reconciler: StuckSendReconciler) -> None:
    while True:
        await asyncio.sleep(RECONCILE_INTERVAL_S)
        try:
            report = await reconciler.run_once()
        except TransientError as error:
            log.warning("ledger_reconciliation_failed", error=str(error))
            continue
        if report.settled or report.still_unsettled:
            log.info("ledger_reconciled", settled=report.settled, still_unsettled=report.still_unsettled)
