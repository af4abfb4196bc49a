"""The composition root: opens the adapters from Settings, builds the domain services, closes all in reverse.

Every process main (worker, webhooks, CLI, demo, health server, start-up checks) opens its Redis here, one client
per process, and builds its adapters here and nowhere else; ``build_services`` is the one pure function from ports
to services (real runs, dry runs, unit tests).

Cheap to import, so the health server and the start-up checks use it too: at the top only the domain, the settings
and the adapters every process loads anyway (the Redis connection, clock, logging, metrics, key names); every other
adapter is imported in the function that builds it, so its library (bullmq, Twilio, SendGrid, Sentry,
OpenTelemetry, ...) loads only in a process that uses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import attrs
import redis.asyncio as redis_asyncio
import structlog

from adapters.bullmq.connection import RedisSettings, close_redis, open_client
from adapters.clock import SystemClock
from adapters.observability.logging import configure_logging
from adapters.observability.metrics import MetricsRecorder
from adapters.redis_keys import rate_limit_key, twilio_sent_prefix
from adapters.redis_topology import parse_endpoints
from domain.consent import ConsentGatedLedger
from domain.copy_personalization import CopyPersonalization
from domain.delivery import Dispatcher
from domain.dunning import DunningService
from domain.errors import ConfigurationError
from domain.jobs import CONSUMED_QUEUES, JOB_TYPES, PUBLISHED_JOB_DEFAULTS, Job, JobName, QueueName
from domain.nurture import NurtureService
from domain.outcomes import Outcome, Skipped
from domain.personalization import DailyBudget
from domain.ports import (
    Appointments,
    Clock,
    Contacts,
    EmailSender,
    Invoices,
    JobPublisher,
    KpiFactsSource,
    NurtureEnrollments,
    Organizations,
    SendLedger,
    SmsSender,
    SnapshotStore,
    SuppressionList,
    TemplateRenderer,
    Templates,
)
from domain.reconciliation import UnknownSendReconciler
from domain.reminders import ReminderService
from domain.snapshots import SnapshotService
from domain.values import EmailAddress
from entrypoints.settings import Settings

if TYPE_CHECKING:
    from adapters.backfill_checkpoint import BackfillCheckpoint
    from adapters.bullmq.dead_letter_admin import DeadLetterAdmin
    from adapters.bullmq.maintenance import MaintenancePolicy, QueueMaintenance
    from adapters.bullmq.queue_control import QueueControl
    from adapters.bullmq.router import Handler
    from adapters.bullmq.worker_config import WorkerConfig
    from adapters.dry_run import DryRunEffects
    from adapters.postgres.dry_run import DryRunDatabase
    from adapters.postgres.feedback import PostgresDeliveryFeedback
    from adapters.postgres.pool import PostgresDatabase
    from adapters.scheduling.schedules import Schedule
    from adapters.scheduling.status import ScheduleRunRecorder
    from adapters.webhooks.server import WebhookHandlers

log = structlog.get_logger()

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
        from adapters.observability.sentry import init_sentry

        init_sentry(settings.sentry_dsn, environment=settings.node_env, release=settings.release, server_name=process)
    if settings.otel_endpoint:
        from adapters.observability.tracing import init_tracing, sampler_named

        init_tracing(
            "clientflow-worker",
            endpoint=settings.otel_endpoint,
            service_version=settings.release,
            environment=settings.node_env,
            sampler=sampler_named(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
        )


def stop_observing() -> None:
    """Export the buffered spans and send the queued Sentry events (each bounded in time)."""
    from adapters.observability.sentry import close_sentry
    from adapters.observability.tracing import shutdown_tracing

    shutdown_tracing(5.0)
    close_sentry(2.0)


@attrs.define
class System:
    """Every service of the worker, wired to real adapters."""

    settings: Settings
    database: PostgresDatabase
    redis: redis_asyncio.Redis
    """The process's one Redis client (``open_process_redis``)."""
    clock: Clock
    publisher: JobPublisher
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
        handlers = handlers_by_queue(self.services, _handler(self.maintenance.run))[queue]
        for schedule in self.schedules:
            if schedule.job_name in handlers:
                handlers[schedule.job_name] = self.recorder.wrap(schedule, handlers[schedule.job_name])
        return handlers

    @property
    def services(self) -> Services:
        return Services(self.reminders, self.nurture, self.dunning, self.snapshots)

    def queue_control(self, queue: str) -> QueueControl:
        """Operator control of ``queue`` (the caller has checked it is one we consume)."""
        from adapters.bullmq.queue_control import QueueControl

        return QueueControl(self.redis, self.settings.queue_prefixes, queue)

    def dead_letter_admin(self) -> DeadLetterAdmin:
        from adapters.bullmq.dead_letter_admin import DeadLetterAdmin

        return DeadLetterAdmin(self.redis, self.settings.queue_prefixes)

    def backfill_checkpoint(self, backfill: str) -> BackfillCheckpoint:
        from adapters.backfill_checkpoint import BackfillCheckpoint

        return BackfillCheckpoint(self.redis, self.settings.bullmq_prefix, backfill)


@attrs.frozen
class Services:
    """The domain services of one wiring (real, or a dry run's)."""

    reminders: ReminderService
    nurture: NurtureService
    dunning: DunningService
    snapshots: SnapshotService


def handlers_by_queue(services: Services, maintain: Handler) -> dict[QueueName, dict[JobName, Handler]]:
    """Each consumed queue's handler per job name (domain/jobs.py's JOB_TYPES); ``maintain`` runs queue maintenance.

    The router refuses a map that misses or adds a job name of its queue (tests/unit/test_topology.py builds all)."""
    by_name: dict[JobName, Handler] = {
        JobName.REMINDER: _handler(services.reminders.process),
        JobName.SCAN_APPOINTMENTS: _handler(services.reminders.scan),
        JobName.NURTURE: _handler(services.nurture.process),
        JobName.DUNNING: _handler(services.dunning.process),
        JobName.SNAPSHOT: _handler(services.snapshots.compute),
        JobName.FAN_OUT_SNAPSHOTS: _handler(services.snapshots.fan_out),
        JobName.MAINTAIN_QUEUES: maintain,
    }
    return {
        queue: {name: by_name[name] for name, job_type in JOB_TYPES.items() if job_type.queue is queue}
        for queue in CONSUMED_QUEUES
    }


@attrs.frozen
class Ports:
    """Everything the domain services need from outside, one field per port (domain/ports.py): PostgreSQL's in
    real runs and dry runs (``postgres_ports``), in-memory fakes in unit tests."""

    organizations: Organizations
    contacts: Contacts
    appointments: Appointments
    templates: Templates
    ledger: SendLedger
    suppressions: SuppressionList
    enrollments: NurtureEnrollments
    invoices: Invoices
    kpi_facts: KpiFactsSource
    snapshot_store: SnapshotStore
    renderer: TemplateRenderer
    sms: SmsSender
    email: EmailSender
    publisher: JobPublisher
    clock: Clock
    personalization: CopyPersonalization | None = None
    """AI copy of opted-in nurture templates; None in dry runs (no model is asked there)."""


def postgres_ports(
    database: PostgresDatabase,
    sms: SmsSender,
    email: EmailSender,
    publisher: JobPublisher,
    clock: Clock,
    personalization: CopyPersonalization | None = None,
) -> Ports:
    """The ports on this database (the CRM tables, the send ledger, delivery feedback) and these edges."""
    from adapters.postgres.crm import (
        PostgresAppointments,
        PostgresContacts,
        PostgresInvoices,
        PostgresOrganizations,
        PostgresTemplates,
    )
    from adapters.postgres.feedback import PostgresDeliveryFeedback
    from adapters.postgres.kpi import PostgresKpiFacts
    from adapters.postgres.ledger import PostgresSendLedger
    from adapters.postgres.nurture import PostgresNurtureEnrollments
    from adapters.postgres.snapshots import PostgresSnapshotStore
    from adapters.template_renderer import PlaceholderTemplateRenderer

    return Ports(
        organizations=PostgresOrganizations(database),
        contacts=PostgresContacts(database),
        appointments=PostgresAppointments(database),
        templates=PostgresTemplates(database),
        ledger=PostgresSendLedger(database),
        suppressions=PostgresDeliveryFeedback(database),
        enrollments=PostgresNurtureEnrollments(database),
        invoices=PostgresInvoices(database),
        kpi_facts=PostgresKpiFacts(database),
        snapshot_store=PostgresSnapshotStore(database),
        renderer=PlaceholderTemplateRenderer(),
        sms=sms,
        email=email,
        publisher=publisher,
        clock=clock,
        personalization=personalization,
    )


def build_services(ports: Ports, settle: timedelta, jitter: timedelta | None = None) -> Services:
    """Wire the domain services to ``ports``: the one place a service is built (real runs, dry runs, unit tests).

    Pure: builds objects, opens nothing. ``settle`` is how long after a send attempt an unconfirmed message counts
    as unsettled (Settings ``send_settle_seconds``); ``jitter`` is the most added at random to a deferral for an
    unsettled send (None: the Dispatcher's default; unit tests pass zero to stay deterministic)."""
    p = ports
    # Every send path claims through this ledger: an address withdrawn by a STOP or a bounce is refused here.
    ledger = ConsentGatedLedger(p.ledger, p.suppressions)
    dispatcher = Dispatcher(ledger, p.sms, p.email, p.clock, settle=settle)
    if jitter is not None:
        dispatcher = attrs.evolve(dispatcher, jitter=jitter)
    return Services(
        reminders=ReminderService(
            p.appointments, p.contacts, p.organizations, p.templates, p.renderer, p.publisher, dispatcher, p.clock
        ),
        nurture=NurtureService(
            p.enrollments,
            p.contacts,
            p.organizations,
            p.appointments,
            p.templates,
            p.renderer,
            ledger,
            dispatcher,
            p.publisher,
            p.clock,
            personalization=p.personalization,
        ),
        dunning=DunningService(p.contacts, p.organizations, p.invoices, p.templates, p.renderer, dispatcher, p.clock),
        snapshots=SnapshotService(p.organizations, p.kpi_facts, p.snapshot_store, p.clock, p.publisher),
    )


def settle_time(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.send_settle_seconds)


def dry_run_handlers(services: Services, queue: QueueName) -> Mapping[JobName, Handler]:
    """One queue's handlers for a dry run: the services themselves, with no schedule status recorded."""
    return handlers_by_queue(services, _no_dry_run_maintenance)[queue]


@attrs.frozen
class DryRun:
    """A dry run's wiring: the real services on a database whose transaction is rolled back, with senders and a
    publisher that collect into ``effects`` instead of leaving the process."""

    database: DryRunDatabase
    services: Services
    effects: DryRunEffects


@asynccontextmanager
async def open_dry_run(system: System) -> AsyncIterator[DryRun]:
    """A dry run over ``system``'s database; reconciliation of an unsettled SMS asks ``system``'s real sender."""
    from adapters.dry_run import DryRunEffects, DryRunEmailSender, DryRunPublisher, DryRunSmsSender
    from adapters.postgres.dry_run import rolled_back_database

    effects = DryRunEffects()
    async with rolled_back_database(system.settings.database_url) as database:
        ports = postgres_ports(
            database.database,
            DryRunSmsSender(effects, real=system.sms),
            DryRunEmailSender(effects),
            DryRunPublisher(effects),
            system.clock,
        )
        yield DryRun(database, build_services(ports, settle_time(system.settings)), effects)


async def _no_dry_run_maintenance(_job: Job) -> Outcome:
    return Skipped("maintenance_is_not_dry_run")


def maintenance_policy(settings: Settings) -> MaintenancePolicy:
    from adapters.bullmq.maintenance import MaintenancePolicy

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
    from adapters.messaging.outbox import OutboxEmailSender, OutboxSmsSender
    from adapters.messaging.rate_limit import RedisRateLimiter

    closers: list[Callable[[], Awaitable[None]]] = []
    prefix = settings.bullmq_prefix
    sms: SmsSender
    email: EmailSender
    if settings.twilio_configured:
        from adapters.messaging.twilio_sms import TWILIO_API_BASE_URL, TwilioSmsSender

        assert settings.twilio_account_sid is not None
        assert settings.twilio_auth_token is not None
        twilio = TwilioSmsSender(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            sender=settings.twilio_messaging_service_sid or settings.twilio_from_number or "",
            redis=redis,
            clock=clock,
            status_callback_url=settings.twilio_status_callback_url,
            rate_limiter=RedisRateLimiter(redis, rate_limit_key(prefix, "twilio"), settings.sms_per_second, clock),
            base_url=settings.twilio_base_url or TWILIO_API_BASE_URL,
            record_prefix=twilio_sent_prefix(prefix),
            recorder=metrics,
        )
        closers.append(twilio.close)
        sms = twilio
    else:
        sms = OutboxSmsSender(database, clock, metrics)
    if settings.sendgrid_configured:
        from adapters.messaging.sendgrid_email import SendGridEmailSender

        assert settings.sendgrid_api_key is not None
        assert settings.sendgrid_from_email is not None
        sendgrid = SendGridEmailSender(
            api_key=settings.sendgrid_api_key,
            from_email=EmailAddress(settings.sendgrid_from_email),
            clock=clock,
            rate_limiter=RedisRateLimiter(redis, rate_limit_key(prefix, "sendgrid"), settings.email_per_second, clock),
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
    from adapters.observability.personalization import MetricsPersonalizationRecorder
    from adapters.postgres.personalization import PostgresPersonalizationBudgets, PostgresPersonalizedCopies

    personalizer = None
    if settings.openai_api_key:
        # The openai library (with pydantic) adds about a second to every worker's start-up, which processes
        # without OPENAI_API_KEY need not pay (supervisord's startsecs counts it).
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


def redis_settings(settings: Settings) -> RedisSettings:
    """Where every process's Redis is: one server, a Sentinel-watched master or a Cluster (see Settings)."""
    endpoint = settings.redis_endpoint
    return RedisSettings(
        host=endpoint.host,
        port=endpoint.port,
        username=endpoint.username,
        password=endpoint.password,
        db=endpoint.db,
        tls=endpoint.tls,
        tls_ca_file=settings.redis_tls_ca_file,
        cluster_nodes=parse_endpoints(settings.redis_cluster_nodes) if settings.redis_cluster_nodes else (),
        sentinels=parse_endpoints(settings.redis_sentinels) if settings.redis_sentinels else (),
        sentinel_master=settings.redis_sentinel_master,
    )


SERVICE_REDIS_CONNECTIONS = 28
"""Connections the services of one process may hold at once (publishing, rate limits, schedule status, metrics)."""


def open_process_redis(settings: Settings) -> redis_asyncio.Redis:
    """The process's one Redis client. Its pool serves the services and, in a worker, the queue runtime: the
    ``2 * WORKER_CONCURRENCY + 8`` connections a worker's jobs may hold (adapters/bullmq/connection.py) plus
    ``SERVICE_REDIS_CONNECTIONS``. Close it with ``close_redis``."""
    redis = redis_settings(settings)
    connections = 2 * settings.worker_concurrency + 8 + SERVICE_REDIS_CONNECTIONS
    return open_client(redis, connections, redis.socket_timeout_s)


def open_probe_redis(redis: RedisSettings, timeout_s: float) -> redis_asyncio.Redis:
    """The health server's one Redis client (``redis``: ``redis_settings`` of its Settings), in the workers'
    topology with ``timeout_s`` to connect and to answer, so a dead Redis answers 503 quickly. Close it with
    ``close_redis``.

    A pooled connection that died while Redis restarted fails its next command with ConnectionError although Redis
    is back: each command is retried once, on a fresh connection, so only a Redis that still refuses connections
    makes a probe fail (a hung one is bounded by the probe's own timeout).
    """
    probing = attrs.evolve(redis, connect_timeout_s=timeout_s, retries=1)
    return open_client(probing, max_connections=8, socket_timeout_s=timeout_s)


def open_check_redis(settings: Settings, timeout_s: float) -> redis_asyncio.Redis:
    """The start-up checks' one Redis client: ``timeout_s`` to connect and to answer, no retry (the checks retry
    with their own backoff and name the cause of each failure). Close it with ``close_redis``."""
    checking = attrs.evolve(redis_settings(settings), connect_timeout_s=timeout_s, retries=0)
    return open_client(checking, max_connections=2, socket_timeout_s=timeout_s)


@asynccontextmanager
async def open_system(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[System]:
    """Open every adapter (migrating the database first), yield the wired System, close all in reverse."""
    from adapters.bullmq.maintenance import QueueMaintenance
    from adapters.bullmq.publisher import BullmqJobPublisher
    from adapters.postgres.migrator import migrate
    from adapters.postgres.pool import PostgresDatabase
    from adapters.scheduling.status import ScheduleRunRecorder

    async with AsyncExitStack() as stack:
        clock = SystemClock()
        if run_migrations:
            applied = await migrate(settings.database_url)
            if applied:
                log.info("migrations_applied", versions=applied)
        database = await PostgresDatabase.connect(settings.database_url)
        stack.push_async_callback(database.close)
        redis = open_process_redis(settings)
        stack.push_async_callback(close_redis, redis)
        metrics = MetricsRecorder(settings.bullmq_prefix)
        sms, email, closers = _senders(settings, database, redis, clock, metrics)
        for close in closers:
            stack.push_async_callback(close)

        publisher = BullmqJobPublisher(redis, settings.queue_prefixes, clock, PUBLISHED_JOB_DEFAULTS)
        personalization = _personalization(settings, database, clock, metrics, stack)
        ports = postgres_ports(database, sms, email, publisher, clock, personalization)
        services = build_services(ports, settle_time(settings))
        schedules = schedules_of(settings)
        yield System(
            settings=settings,
            database=database,
            redis=redis,
            clock=clock,
            publisher=publisher,
            schedules=schedules,
            metrics=metrics,
            reminders=services.reminders,
            nurture=services.nurture,
            dunning=services.dunning,
            snapshots=services.snapshots,
            recorder=ScheduleRunRecorder(redis, settings.queue_prefixes, clock),
            sms=sms,
            maintenance=QueueMaintenance(
                redis, settings.queue_prefixes, [str(q) for q in CONSUMED_QUEUES], maintenance_policy(settings), metrics
            ),
        )


def schedules_of(settings: Settings) -> tuple[Schedule, ...]:
    """One schedule per job of domain/jobs.py's SCHEDULED_JOBS, with its cron from the settings (ConfigurationError
    for a bad pattern or zone)."""
    from adapters.scheduling.schedules import define_schedules, maintenance_schedule

    return (
        *define_schedules(settings.scan_cron, settings.snapshot_cron, settings.schedule_tz),
        maintenance_schedule(settings.maintenance_cron, settings.schedule_tz),
    )


def worker_config(settings: Settings, queue: QueueName) -> WorkerConfig:
    from adapters.bullmq.worker_config import WorkerConfig

    return WorkerConfig(
        queue=queue,
        redis=redis_settings(settings),
        prefix=settings.bullmq_prefix,
        queue_prefixes=settings.queue_prefixes.own,
        concurrency=settings.worker_concurrency,
        lock_duration_ms=settings.lock_duration_ms,
        stalled_interval_ms=settings.stalled_interval_ms,
        max_stalled_count=settings.max_stalled_count,
        grace_period_s=settings.worker_grace_seconds,
    )


@attrs.frozen
class WorkerComponents:
    config: WorkerConfig
    handlers: Mapping[JobName, Handler]
    metrics: MetricsRecorder
    schedules: tuple[Schedule, ...]
    redis: redis_asyncio.Redis


@asynccontextmanager
async def worker_components(queue: QueueName) -> AsyncIterator[WorkerComponents]:
    """What ``python -m entrypoints.worker --queue <name>`` runs: config, handlers, the process's metrics
    recorder (the adapters count into it; the worker flushes it), the schedules, and the process's one Redis client
    (the services' and the queue runtime's), for one queue's worker.

    Every worker upserts the schedules at start-up and then re-asserts them while it runs (idempotent, safe
    concurrently), so no process is special.
    """
    from adapters.scheduling.cron import install_zoned_repeat_strategy
    from adapters.scheduling.schedules import sync_schedules

    settings = Settings.from_env()
    observe(settings, process=f"worker-{queue}")
    log.info("worker_starting", queue=str(queue), **settings.describe())
    install_zoned_repeat_strategy()
    try:
        async with open_system(settings) as system:
            report = await sync_schedules(system.redis, settings.queue_prefixes, system.schedules)
            log.info("schedules_synced", report=str(report))
            yield WorkerComponents(
                worker_config(settings, queue), system.handlers(queue), system.metrics, system.schedules, system.redis
            )
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
    from adapters.webhooks.sendgrid import SendGridSignature

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
    from adapters.postgres.feedback import PostgresDeliveryFeedback, open_acknowledging_database
    from adapters.postgres.migrator import migrate
    from adapters.webhooks.sendgrid import SendGridSignature
    from adapters.webhooks.server import WebhookHandlers
    from adapters.webhooks.twilio import TwilioWebhooks

    problem = webhooks_problem(settings)
    if problem is not None:
        raise ConfigurationError(problem)
    async with AsyncExitStack() as stack:
        clock = SystemClock()
        await migrate(settings.database_url)
        database = await open_acknowledging_database(settings.database_url)
        stack.push_async_callback(database.close)
        redis = open_process_redis(settings)
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
            settle=settle_time(settings),
            horizon=timedelta(hours=settings.send_unconfirmed_after_hours),
        )
        yield Webhooks(settings, handlers, reconciler, feedback, metrics, redis)
