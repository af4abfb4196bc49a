"""The composition root: opens the adapters from Settings, builds the domain services, closes all in reverse.

Every process main (worker, CLI, demo) and the integration tests build the system here and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TypeVar

import attrs
import redis.asyncio as redis_asyncio
import structlog

from adapters.bullmq.connection import close_redis, open_redis
from adapters.bullmq.maintenance import MaintenancePolicy, QueueMaintenance
from adapters.bullmq.publisher import BullmqJobPublisher, Retention
from adapters.bullmq.router import Handler
from adapters.bullmq.worker_config import WorkerConfig
from adapters.clock import SystemClock
from adapters.observability.logging import configure_logging
from adapters.observability.metrics import MetricsRecorder
from adapters.observability.personalization import MetricsPersonalizationRecorder
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
from adapters.postgres.feedback import PostgresDeliveryFeedback, open_acknowledging_database
from adapters.postgres.kpi import PostgresKpiFacts
from adapters.postgres.ledger import PostgresSendLedger
from adapters.postgres.migrator import migrate
from adapters.postgres.nurture import PostgresNurtureEnrollments
from adapters.postgres.personalization import PostgresPersonalizationBudgets, PostgresPersonalizedCopies
from adapters.postgres.pool import PostgresDatabase
from adapters.postgres.snapshots import PostgresSnapshotStore
from adapters.rate_limit import RedisRateLimiter
from adapters.scheduling.cron import install_zoned_repeat_strategy
from adapters.scheduling.schedules import (
    OWNED_QUEUES,
    Schedule,
    define_schedules,
    find_schedule,
    maintenance_schedule,
    sync_schedules,
)
from adapters.scheduling.status import ScheduleRunRecorder
from adapters.sendgrid_email import SendGridEmailSender
from adapters.template_renderer import PlaceholderTemplateRenderer
from adapters.twilio_sms import TWILIO_API_BASE_URL, TwilioSmsSender
from adapters.webhooks.sendgrid import SendGridSignature
from adapters.webhooks.server import WebhookHandlers
from adapters.webhooks.twilio import TwilioWebhooks
from domain.consent import ConsentGatedLedger
from domain.copy_personalization import CopyPersonalization
from domain.delivery import Dispatcher
from domain.dunning import DunningService
from domain.errors import ConfigurationError
from domain.jobs import Job, JobName, QueueName
from domain.nurture import NurtureService
from domain.outcomes import Outcome, Skipped
from domain.personalization import DailyBudget
from domain.ports import Clock, EmailSender, JobPublisher, SmsSender
from domain.reconciliation import UnknownSendReconciler
from domain.reminders import ReminderService
from domain.snapshots import SnapshotService
from domain.values import EmailAddress
from entrypoints.redis_connection import redis_settings
from entrypoints.settings import Settings

log = structlog.get_logger()

# Completed reminder jobs must outlive the hourly scans that could queue them again (up to ~27 h before the
# appointment); other finished jobs are kept a day, failed ones two weeks.
RETENTION = Retention(completed_age_s=48 * 3600)

J = TypeVar("J", bound=Job)


def _handler(method: Callable[[J], Awaitable[Outcome]]) -> Handler:
    """Adapt a service method taking one payload type to the router's Handler (the router decodes the type)."""

    async def handle(job: Job) -> Outcome:
        return await method(job)  # type: ignore[arg-type]  # the router hands each name its own payload type

    return handle


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
    sms: SmsSender
    """The SMS sender the services use (dry runs ask it whether an unsettled message went out)."""
    maintenance: QueueMaintenance

    def handlers(self, queue: QueueName) -> Mapping[JobName, Handler]:
        """The handlers of one queue's jobs; scheduled jobs record their runs for the status endpoints."""
        scan = self.recorder.wrap(find_schedule(self.schedules, "scan-appointments"), self.reminders.scan)
        fan_out = self.recorder.wrap(find_schedule(self.schedules, "fan-out-snapshots"), self.snapshots.fan_out)
        maintain = self.recorder.wrap(find_schedule(self.schedules, "maintain-queues"), self.maintenance.run)
        return _handlers_by_queue(self.services, _handler(scan), _handler(fan_out), _handler(maintain))[queue]

    @property
    def services(self) -> Services:
        return Services(self.reminders, self.nurture, self.dunning, self.snapshots)


@attrs.frozen
class Services:
    """The domain services of one wiring (real, or a dry run's)."""

    reminders: ReminderService
    nurture: NurtureService
    dunning: DunningService
    snapshots: SnapshotService


def _handlers_by_queue(
    services: Services, scan: Handler, fan_out: Handler, maintain: Handler
) -> dict[QueueName, dict[JobName, Handler]]:
    return {
        QueueName.REMINDERS: {
            JobName.REMINDER: _handler(services.reminders.process),
            JobName.SCAN_APPOINTMENTS: scan,
        },
        QueueName.NURTURE: {JobName.NURTURE: _handler(services.nurture.process)},
        QueueName.DUNNING: {JobName.DUNNING: _handler(services.dunning.process)},
        QueueName.SNAPSHOTS: {
            JobName.SNAPSHOT: _handler(services.snapshots.compute),
            JobName.FAN_OUT_SNAPSHOTS: fan_out,
            JobName.MAINTAIN_QUEUES: maintain,
        },
    }


def build_services(
    settings: Settings,
    database: PostgresDatabase,
    sms: SmsSender,
    email: EmailSender,
    publisher: JobPublisher,
    clock: Clock,
    personalization: CopyPersonalization | None = None,
) -> Services:
    """Wire the domain services to these edges: the one place a service is built (real runs and dry runs).

    ``personalization`` (AI copy of opted-in nurture templates) is None in dry runs: no model is asked there."""
    organizations = PostgresOrganizations(database)
    contacts = PostgresContacts(database)
    appointments = PostgresAppointments(database)
    templates = PostgresTemplates(database)
    # Every send path claims through this ledger: an address withdrawn by a STOP or a bounce is refused here.
    ledger = ConsentGatedLedger(PostgresSendLedger(database), PostgresDeliveryFeedback(database))
    renderer = PlaceholderTemplateRenderer()
    dispatcher = Dispatcher(ledger, sms, email, clock, settle=timedelta(seconds=settings.send_settle_seconds))
    return Services(
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
            personalization=personalization,
        ),
        dunning=DunningService(
            contacts, organizations, PostgresInvoices(database), templates, renderer, dispatcher, clock
        ),
        snapshots=SnapshotService(
            organizations, PostgresKpiFacts(database), PostgresSnapshotStore(database), clock, publisher
        ),
    )


def dry_run_handlers(services: Services, queue: QueueName) -> Mapping[JobName, Handler]:
    """One queue's handlers for a dry run: the services themselves, with no schedule status recorded."""
    scan, fan_out = _handler(services.reminders.scan), _handler(services.snapshots.fan_out)
    return _handlers_by_queue(services, scan, fan_out, _no_dry_run_maintenance)[queue]


async def _no_dry_run_maintenance(_job: Job) -> Outcome:
    return Skipped("maintenance_is_not_dry_run")


def maintenance_policy(settings: Settings) -> MaintenancePolicy:
    return MaintenancePolicy(
        completed_max_age_s=settings.completed_jobs_max_age_hours * 3600,
        failed_max_age_s=settings.failed_jobs_max_age_hours * 3600,
        finished_max_count=settings.finished_jobs_max_count,
        dead_letter_retention_s=settings.dead_letter_retention_days * 86400,
    )


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


def _personalization(
    settings: Settings, database: PostgresDatabase, clock: SystemClock, metrics: MetricsRecorder, stack: AsyncExitStack
) -> CopyPersonalization:
    """AI personalization of opted-in templates with OPENAI_API_KEY; without it no model is asked, but the words
    stored for a send while it was on stay that send's words."""
    personalizer = None
    if settings.openai_api_key:
        # Imported here: the openai library (with pydantic) adds about a second to every worker's start-up, which
        # processes without OPENAI_API_KEY need not pay (supervisord's startsecs counts it).
        from adapters.openai_personalizer import OPENAI_API_BASE_URL, OpenAICopyPersonalizer

        personalizer = OpenAICopyPersonalizer(
            api_key=settings.openai_api_key,
            model=settings.openai_model,
            base_url=settings.openai_base_url or OPENAI_API_BASE_URL,
            timeout_seconds=settings.openai_timeout_seconds,
            recorder=metrics,
        )
        stack.push_async_callback(personalizer.close)
    return CopyPersonalization(
        personalizer,
        PostgresPersonalizedCopies(database),
        PostgresPersonalizationBudgets(database),
        MetricsPersonalizationRecorder(metrics),
        clock,
        DailyBudget(settings.openai_daily_requests_per_org, settings.openai_daily_tokens_per_org),
    )


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

        publisher = BullmqJobPublisher(redis, settings.bullmq_prefix, clock, RETENTION)
        personalization = _personalization(settings, database, clock, metrics, stack)
        services = build_services(settings, database, sms, email, publisher, clock, personalization)
        schedules = (
            *define_schedules(settings.scan_cron, settings.snapshot_cron, settings.schedule_tz),
            maintenance_schedule(settings.maintenance_cron, settings.schedule_tz),
        )
        yield System(
            settings=settings,
            database=database,
            redis=redis,
            schedules=schedules,
            metrics=metrics,
            reminders=services.reminders,
            nurture=services.nurture,
            dunning=services.dunning,
            snapshots=services.snapshots,
            recorder=ScheduleRunRecorder(redis, settings.bullmq_prefix, clock),
            sms=sms,
            maintenance=QueueMaintenance(
                redis, settings.bullmq_prefix, [str(q) for q in OWNED_QUEUES], maintenance_policy(settings), metrics
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
) -> AsyncIterator[tuple[WorkerConfig, Mapping[JobName, Handler], MetricsRecorder, tuple[Schedule, ...]]]:
    """What ``python -m entrypoints.worker --queue <name>`` runs: config, handlers, the process's metrics
    recorder (the adapters count into it; the worker flushes it) and the schedules, for one queue's worker.

    Every worker upserts the schedules at start-up and then re-asserts them while it runs (idempotent, safe
    concurrently), so no process is special.
    """
    settings = Settings.from_env()
    observe(settings, process=f"worker-{queue}")
    log.info("worker_starting", queue=str(queue), **settings.describe())
    install_zoned_repeat_strategy()
    try:
        async with open_system(settings) as system:
            report = await sync_schedules(system.redis, settings.bullmq_prefix, system.schedules)
            log.info("schedules_synced", report=str(report))
            yield worker_config(settings, queue), system.handlers(queue), system.metrics, system.schedules
    finally:
        stop_observing()


@attrs.define
class Webhooks:
    """What ``python -m entrypoints.webhooks`` runs: the request handlers, the reconciler of unsettled sends, the
    store they share and the process's metrics (flushed to ``redis``)."""

    settings: Settings
    handlers: WebhookHandlers
    reconciler: UnknownSendReconciler
    feedback: PostgresDeliveryFeedback
    metrics: MetricsRecorder
    redis: redis_asyncio.Redis


def webhooks_problem(settings: Settings) -> str | None:
    """Why the webhooks program cannot run with these settings (one line naming the setting), or None."""
    if settings.twilio_configured and not settings.webhooks_public_url:
        return "WEBHOOKS_PUBLIC_URL is required with Twilio (request signatures are checked against it)"
    if settings.production and settings.sendgrid_configured and not settings.sendgrid_webhook_verification_key:
        return "SENDGRID_WEBHOOK_VERIFICATION_KEY is required in production (unsigned events are refused)"
    if settings.sendgrid_webhook_verification_key:
        try:
            SendGridSignature(settings.sendgrid_webhook_verification_key, settings.webhooks_max_age_seconds)
        except (ValueError, TypeError):
            return "SENDGRID_WEBHOOK_VERIFICATION_KEY is not a base64 ECDSA public key"
    return None


@asynccontextmanager
async def open_webhooks(settings: Settings) -> AsyncIterator[Webhooks]:
    """Open the webhooks program's adapters (migrating first), yield them wired, close all in reverse.

    Raises ConfigurationError naming the setting when ``webhooks_problem`` finds one.
    """
    problem = webhooks_problem(settings)
    if problem is not None:
        raise ConfigurationError(problem)
    async with AsyncExitStack() as stack:
        clock = SystemClock()
        await migrate(settings.database_url)
        database = await open_acknowledging_database(settings.database_url)
        stack.push_async_callback(database.close)
        redis = open_redis(redis_settings(settings))
        stack.push_async_callback(close_redis, redis)
        metrics = MetricsRecorder(settings.bullmq_prefix)
        sms, _email, closers = _senders(settings, database, redis, clock, metrics)
        for close in closers:
            stack.push_async_callback(close)
        feedback = PostgresDeliveryFeedback(database)
        twilio = None
        if settings.twilio_auth_token and settings.webhooks_public_url:
            twilio = TwilioWebhooks(settings.twilio_auth_token, settings.webhooks_public_url)
        key = settings.sendgrid_webhook_verification_key
        handlers = WebhookHandlers(
            feedback=feedback,
            clock=clock,
            twilio=twilio,
            sendgrid=SendGridSignature(key, settings.webhooks_max_age_seconds) if key else None,
            max_body_bytes=settings.webhooks_max_body_bytes,
            metrics=metrics,
        )
        reconciler = UnknownSendReconciler(
            sends=feedback,
            feedback=feedback,
            sms=sms,
            clock=clock,
            settle=timedelta(seconds=settings.send_settle_seconds),
            horizon=timedelta(hours=settings.send_unconfirmed_after_hours),
        )
        yield Webhooks(settings, handlers, reconciler, feedback, metrics, redis)
