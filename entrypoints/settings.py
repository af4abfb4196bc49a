"""Every setting of the worker processes, declared once: variable name, type, default, unit and meaning.

The only module that reads the environment. Values come from the process environment, then from ``.env`` in the
checkout (the environment wins; an empty value counts as unset), then from ``var/embedded.env`` (the embedded
servers scripts/run started, if any), through pydantic-settings (typed fields, constraints and .env parsing from a
well-kept library; environ-config has no .env source). The README's
configuration table and ``.env.example`` are generated from this declaration (``python -m entrypoints.settings
markdown|env-example``) and a unit test keeps both equal to it.

A value that breaks a rule raises SettingsError naming the variable and the rule, never the value (secrets are
marked ``secret`` and kept out of ``repr``). Process mains exit 78 (EX_CONFIG) on it.

Adding a setting is one entry in ``Settings`` below (``setting(...)`` with its variable, meaning and unit), then
``python -m entrypoints.settings write`` to regenerate the README table and ``.env.example``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, get_args, get_origin
from urllib.parse import unquote, urlsplit

import attrs
from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from adapters.bullmq.keys import DEAD_LETTER_QUEUE
from adapters.redis_topology import QueuePrefixes, parse_endpoints, parse_queue_prefixes, prefix_pins_one_slot
from domain.jobs import CONSUMED_QUEUES

CHECKOUT = pathlib.Path(__file__).absolute().parent.parent
ENV_FILE = CHECKOUT / ".env"
EMBEDDED_ENV_FILE = CHECKOUT / "var" / "embedded.env"
"""Written by scripts/run when it runs embedded Redis/PostgreSQL (their addresses); read last."""
EXIT_CONFIGURATION = 78  # EX_CONFIG (sysexits.h): supervisord counts it as a failed start
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/clientflow"
DEFAULT_OPENAI_MODEL = "gpt-5.4-mini"  # OpenAI's current small model (2026)
QUEUES = (*(str(queue) for queue in CONSUMED_QUEUES), DEAD_LETTER_QUEUE)
"""The queues a prefix may be given to (the Node CRM's names, dead-letter included)."""
LogLevel = Literal["trace", "debug", "info", "warn", "error", "fatal"]
TracesSampler = Literal[
    "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
    "parentbased_traceidratio",
]  # fmt: skip
"""OTEL_TRACES_SAMPLER's values in the OpenTelemetry SDK environment variable specification
(https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration) that the
Python SDK implements (``adapters.observability.tracing.sampler_named`` builds each)."""


class SettingsError(ValueError):
    """A variable has a value the worker cannot use; the message names it and the rule, never a secret value."""


def setting(
    default: Any,
    env: str,
    meaning: str,
    *,
    group: str,
    unit: str = "",
    secret: bool = False,
    shown_default: str | None = None,
    **rules: Any,
) -> Any:
    """One declared setting: read from ``env``; ``meaning``/``unit``/``group`` feed the README and .env.example;
    ``rules`` are pydantic constraints (``ge``, ``gt`` ...); ``shown_default`` replaces the default in the docs."""
    extra: dict[str, Any] = {"group": group, "unit": unit, "secret": secret}
    if shown_default is not None:
        extra["shown_default"] = shown_default
    return Field(default, validation_alias=env, description=meaning, repr=not secret, json_schema_extra=extra, **rules)


class _MappingSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ`` (tests, explicit calls)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items() if value.strip()}


_explicit_environ: list[Mapping[str, str]] = []
"""The mapping ``Settings.from_env(env)`` is building from, while it builds (process mains build once, at start)."""


class Settings(BaseSettings):
    """The worker's settings; field names are the code's, ``validation_alias`` the variables (the Node worker's
    names first). Build with ``Settings.from_env()``."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_ignore_empty=True, extra="ignore", frozen=True, str_strip_whitespace=True
    )

    # ---------------------------------------------------------------- Redis and BullMQ
    redis_host: str = setting("127.0.0.1", "REDIS_HOST", "Redis host", group="Redis")
    redis_port: int = setting(6379, "REDIS_PORT", "Redis port", group="Redis", ge=1, le=65535)
    redis_password: str | None = setting(None, "REDIS_PASSWORD", "Redis password", group="Redis", secret=True)
    redis_url: str | None = setting(
        None,
        "REDIS_URL",
        "`redis://` or `rediss://` (TLS) `[user:password@]host:port[/db]`; wins over REDIS_HOST/PORT/PASSWORD; "
        "in cluster or sentinel mode only its user, password and TLS apply",
        group="Redis",
        secret=True,
    )
    redis_username: str | None = setting(
        None, "REDIS_USERNAME", "Redis ACL user (with REDIS_PASSWORD; REDIS_URL's user wins)", group="Redis"
    )
    redis_tls_ca_file: str | None = setting(
        None,
        "REDIS_TLS_CA_FILE",
        "CA certificate (PEM) the Redis server's TLS certificate must chain to; needs `rediss://`",
        group="Redis",
        shown_default="the system's CAs",
    )
    redis_cluster_nodes: str | None = setting(
        None,
        "REDIS_CLUSTER_NODES",
        "Redis Cluster seeds `host:port,host:port` (cluster mode: BULLMQ_PREFIX needs a hash tag such as `{bull}`)",
        group="Redis",
    )
    redis_sentinels: str | None = setting(
        None, "REDIS_SENTINELS", "Sentinels `host:port,host:port` (sentinel mode)", group="Redis"
    )
    redis_sentinel_master: str = setting(
        "mymaster", "REDIS_SENTINEL_MASTER", "the master's name in Sentinel", group="Redis", min_length=1
    )
    bullmq_prefix: str = setting(
        "bull",
        "BULLMQ_PREFIX",
        "BullMQ key prefix of every queue without one of its own, and of our own keys (must match the Node CRM's)",
        group="Redis",
        min_length=1,
    )
    bullmq_queue_prefixes: str | None = setting(
        None,
        "BULLMQ_QUEUE_PREFIXES",
        "a prefix per queue, `queue=prefix,...`, as the Node CRM's `new Queue(name, {prefix})` (e.g. "
        f"`{','.join(f'{queue}={{{queue}}}' for queue in QUEUES)}`: one hash tag per queue spreads the queues over a "
        "Cluster's shards); queues not named use BULLMQ_PREFIX",
        group="Redis",
        shown_default="BULLMQ_PREFIX for every queue",
    )

    # ---------------------------------------------------------------- PostgreSQL
    database_url: str = setting(
        DEFAULT_DATABASE_URL,
        "DATABASE_URL",
        "PostgreSQL URL (`postgresql://user[:password]@host:port/database`)",
        group="PostgreSQL",
        secret=True,
    )

    # ---------------------------------------------------------------- Observability
    node_env: str = setting(
        "development",
        "NODE_ENV",
        "`production`: JSON log lines (tracebacks too), and real providers are required",
        group="Observability",
    )
    log_level: LogLevel = setting("info", "LOG_LEVEL", "`trace debug info warn error fatal`", group="Observability")
    release: str = setting(
        "clientflow-worker@0.1.0", "RELEASE", "release name for Sentry and traces", group="Observability"
    )
    sentry_dsn: str | None = setting(
        None, "SENTRY_DSN", "Sentry errors and FATAL alerts", group="Observability", secret=True
    )
    otel_endpoint: str | None = setting(
        None, "OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP/HTTP traces endpoint", group="Observability"
    )
    # Names, values and defaults of the next two: the OpenTelemetry SDK environment variable specification (above).
    otel_traces_sampler: TracesSampler = setting(
        "parentbased_always_on",
        "OTEL_TRACES_SAMPLER",
        "which traces are exported (OpenTelemetry's sampler names): `always_on always_off traceidratio "
        "parentbased_always_on parentbased_always_off parentbased_traceidratio`; a `parentbased_` one follows the "
        "Node producer's decision for a job it traced. Sampled-out jobs still log and count in the metrics",
        group="Observability",
    )
    otel_traces_sampler_arg: float = setting(
        1.0,
        "OTEL_TRACES_SAMPLER_ARG",
        "the share of traces the two `traceidratio` samplers keep, decided on the trace id (ignored by the others)",
        group="Observability",
        unit="ratio",
        ge=0,
        le=1,
    )

    # ---------------------------------------------------------------- Providers (unset: the local outbox table)
    twilio_account_sid: str | None = setting(
        None, "TWILIO_ACCOUNT_SID", "Twilio account; unset: SMS go to the outbox table", group="Providers"
    )
    twilio_auth_token: str | None = setting(
        None, "TWILIO_AUTH_TOKEN", "Twilio auth token", group="Providers", secret=True
    )
    twilio_from_number: str | None = setting(
        None,
        "TWILIO_FROM_NUMBER",
        "SMS sender number (this or a messaging service is required with Twilio)",
        group="Providers",
        secret=True,
    )
    twilio_messaging_service_sid: str | None = setting(
        None, "TWILIO_MESSAGING_SERVICE_SID", "Twilio messaging service (instead of a number)", group="Providers"
    )
    twilio_status_callback_url: str | None = setting(
        None, "TWILIO_STATUS_CALLBACK_URL", "Twilio status callback; `?ledger_key=` is appended", group="Providers"
    )
    twilio_base_url: str | None = setting(
        None,
        "TWILIO_BASE_URL",
        "only for tests and local fakes",
        group="Providers",
        shown_default="https://api.twilio.com",
    )
    sendgrid_api_key: str | None = setting(
        None, "SENDGRID_API_KEY", "SendGrid key; unset: email goes to the outbox table", group="Providers", secret=True
    )
    sendgrid_from_email: str | None = setting(
        None, "SENDGRID_FROM_EMAIL", "verified sender (required with SendGrid)", group="Providers", secret=True
    )
    sendgrid_host: str | None = setting(
        None, "SENDGRID_HOST", "only for tests and local fakes", group="Providers", shown_default="SendGrid's API"
    )
    sms_per_second: float = setting(
        10.0, "SMS_PER_SECOND", "Twilio rate limit, shared by all processes", group="Providers", unit="1/s", ge=0.1
    )
    email_per_second: float = setting(
        50.0, "EMAIL_PER_SECOND", "SendGrid rate limit, shared by all processes", group="Providers", unit="1/s", ge=0.1
    )

    # ---------------------------------------------------------------- Workers
    worker_concurrency: int = setting(
        10, "WORKER_CONCURRENCY", "jobs at once per worker process", group="Workers", unit="jobs", ge=1
    )
    worker_grace_seconds: float = setting(
        12.0,
        "WORKER_GRACE_SECONDS",
        "drain time after SIGTERM (or the supervisor's death); below half the lock and below `stopwaitsecs` (40)",
        group="Workers",
        unit="s",
        gt=0,
        lt=40,
    )
    lock_duration_ms: int = setting(
        30_000,
        "LOCK_DURATION_MS",
        "BullMQ job lock; a crashed worker's jobs come back after it",
        group="Workers",
        unit="ms",
        ge=1000,
    )
    stalled_interval_ms: int = setting(
        30_000,
        "STALLED_INTERVAL_MS",
        "how often workers look for jobs whose lock expired (a killed worker's jobs return within two intervals)",
        group="Workers",
        unit="ms",
        ge=1000,
    )
    send_settle_seconds: float = setting(
        60.0,
        "SEND_SETTLE_SECONDS",
        "how long a send of unknown outcome (timeout, crash mid-send) is left alone before it is reconciled with "
        "the provider; at least 16: the provider timeout (10 s), the rate-limit wait (5 s) and 1 s for clocks apart, "
        "since a request that could not be over within this less 1 s after its claim is refused unsent",
        group="Workers",
        unit="s",
        ge=16,
    )

    max_stalled_count: int = setting(
        10,
        "MAX_STALLED_COUNT",
        "how often a job may stall (its worker died or its lock expired) before BullMQ fails it; a stall is not an "
        "attempt: every send is guarded by the ledger, so the limit only stops a job that kills its worker each time",
        group="Workers",
        unit="stalls",
        ge=1,
    )
    owed_after_seconds: float = setting(
        900.0,
        "OWED_AFTER_SECONDS",
        "a send-ledger entry still claimed/unknown this long after its last change is reported as owed and stuck "
        "(health, metrics); above SEND_SETTLE_SECONDS plus a job's backoff",
        group="Workers",
        unit="s",
        ge=1,
    )

    # ---------------------------------------------------------------- Schedules
    scan_cron: str = setting("0 * * * *", "SCAN_CRON", "appointment scan schedule (cron)", group="Schedules")
    snapshot_cron: str = setting(
        "0 * * * *",
        "SNAPSHOT_CRON",
        "snapshot fan-out (cron; each org at 01:xx in its own zone)",
        group="Schedules",
    )
    schedule_tz: str = setting("UTC", "SCHEDULE_TZ", "IANA zone the cron patterns are evaluated in", group="Schedules")

    # ---------------------------------------------------------------- Health server
    health_host: str = setting("127.0.0.1", "HEALTH_HOST", "health and metrics server address", group="Health")
    health_port: int = setting(9464, "HEALTH_PORT", "health and metrics server port", group="Health", ge=1, le=65535)

    # ---------------------------------------------------------------- Delivery webhooks (docs/delivery-feedback.md)
    webhooks_host: str = setting(
        "127.0.0.1", "WEBHOOKS_HOST", "webhooks server address (loopback: behind your HTTPS proxy)", group="Webhooks"
    )
    webhooks_port: int = setting(9465, "WEBHOOKS_PORT", "webhooks server port", group="Webhooks", ge=1, le=65535)
    webhooks_public_url: str | None = setting(
        None,
        "WEBHOOKS_PUBLIC_URL",
        "the public HTTPS URL of the webhooks server, as Twilio calls it (signatures are computed over it; "
        "required with Twilio)",
        group="Webhooks",
    )
    sendgrid_webhook_verification_key: str | None = setting(
        None,
        "SENDGRID_WEBHOOK_VERIFICATION_KEY",
        "SendGrid signed Event Webhook public key (base64 ECDSA; required in production with SendGrid)",
        group="Webhooks",
        secret=True,
    )
    webhooks_max_body_bytes: int = setting(
        1_048_576, "WEBHOOKS_MAX_BODY_BYTES", "larger requests get 413", group="Webhooks", unit="bytes", ge=1024
    )
    webhooks_max_age_seconds: float = setting(
        300.0,
        "WEBHOOKS_MAX_AGE_SECONDS",
        "how far SendGrid's signed timestamp may be from now",
        group="Webhooks",
        unit="s",
        ge=1,
    )
    reconcile_interval_seconds: float = setting(
        60.0,
        "RECONCILE_INTERVAL_SECONDS",
        "how often the webhooks program reconciles unsettled sends",
        group="Webhooks",
        unit="s",
        ge=1,
    )
    send_unconfirmed_after_hours: float = setting(
        24.0,
        "SEND_UNCONFIRMED_AFTER_HOURS",
        "a send still unsettled this long after its claim becomes `failed_unconfirmed` (alert, never re-sent)",
        group="Webhooks",
        unit="h",
        ge=1,
    )

    # ---------------------------------------------------------------- Operations (docs/operations.md)
    maintenance_cron: str = setting(
        "15 * * * *", "MAINTENANCE_CRON", "queue maintenance schedule (cron, in `SCHEDULE_TZ`)", group="Operations"
    )
    completed_jobs_max_age_hours: float = setting(
        48.0,
        "MAINTENANCE_COMPLETED_MAX_AGE_HOURS",
        "completed jobs older than this are cleaned",
        group="Operations",
        unit="h",
        ge=1,
    )
    failed_jobs_max_age_hours: float = setting(
        336.0,
        "MAINTENANCE_FAILED_MAX_AGE_HOURS",
        "failed jobs older than this are cleaned",
        group="Operations",
        unit="h",
        ge=1,
    )
    finished_jobs_max_count: int = setting(
        10_000,
        "MAINTENANCE_FINISHED_MAX_COUNT",
        "at most this many completed (and failed) jobs kept per queue",
        group="Operations",
        unit="jobs",
        ge=100,
    )
    dead_letter_retention_days: float = setting(
        30.0,
        "DEAD_LETTER_RETENTION_DAYS",
        "dead letters older than this are purged (maintenance, `dead-letter purge`)",
        group="Operations",
        unit="days",
        ge=1,
    )

    # ---------------------------------------------------------------- AI personalization (docs/personalization.md)
    openai_api_key: str | None = setting(
        None,
        "OPENAI_API_KEY",
        "OpenAI key; unset: no template is personalized",
        group="Personalization",
        secret=True,
    )
    openai_model: str = setting(
        DEFAULT_OPENAI_MODEL, "OPENAI_MODEL", "the Chat Completions model", group="Personalization", min_length=1
    )
    openai_base_url: str | None = setting(
        None,
        "OPENAI_BASE_URL",
        "the openai library's own variable: a compatible gateway (a local fake in tests); http(s)",
        group="Personalization",
        shown_default="OpenAI's API",
    )
    openai_timeout_seconds: float = setting(
        10.0,
        "OPENAI_TIMEOUT_SECONDS",
        "one request, no retries; past it the template is sent as written",
        group="Personalization",
        unit="s",
        ge=0.1,
    )
    openai_daily_requests_per_org: int = setting(
        500,
        "OPENAI_DAILY_REQUESTS_PER_ORG",
        "each org's model requests per local day",
        group="Personalization",
        unit="requests",
        ge=0,
    )
    openai_daily_tokens_per_org: int = setting(
        1_000_000,
        "OPENAI_DAILY_TOKENS_PER_ORG",
        "each org's model tokens per local day",
        group="Personalization",
        unit="tokens",
        ge=0,
    )

    @field_validator("log_level", "otel_traces_sampler", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        try:
            parts.port  # noqa: B018  # raises on a port that is not a number
        except ValueError:
            raise ValueError("is malformed: the port is not a number from 0 to 65535") from None
        if not parts.hostname:
            raise ValueError("is malformed: it names no host")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            redis_url_parts(value)
        return value

    @field_validator("redis_cluster_nodes", "redis_sentinels")
    @classmethod
    def _endpoints(cls, value: str | None) -> str | None:
        if value is not None:
            parse_endpoints(value)
        return value

    @field_validator("bullmq_queue_prefixes")
    @classmethod
    def _queue_prefixes(cls, value: str | None) -> str | None:
        if value is not None:
            parse_queue_prefixes(value, QUEUES)
        return value

    @field_validator("redis_tls_ca_file")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError("must name a readable file")
        return value

    @model_validator(mode="after")
    def _redis_topology(self) -> Settings:
        """One topology at a time; in a Cluster one queue's keys must share a slot (BullMQ's hash-tagged prefix)."""
        if self.redis_cluster_nodes and self.redis_sentinels:
            raise ValueError("REDIS_CLUSTER_NODES and REDIS_SENTINELS exclude each other: set one")
        if self.redis_cluster_nodes and not prefix_pins_one_slot(self.bullmq_prefix):
            raise ValueError(
                "BULLMQ_PREFIX must hold a hash tag such as {bull} with REDIS_CLUSTER_NODES (Redis Cluster needs each "
                "queue's keys in one slot), and the Node CRM must use the same prefix"
            )
        spread = self.queue_prefixes.spread(QUEUES) if self.redis_cluster_nodes else []
        if spread:
            raise ValueError(
                f"BULLMQ_QUEUE_PREFIXES must give each queue it names a hash tag such as {{{QUEUES[0]}}} with "
                f"REDIS_CLUSTER_NODES (Redis Cluster needs each queue's keys in one slot): {', '.join(spread)} has none"
            )
        if self.redis_tls_ca_file and not self.redis_tls:
            raise ValueError("REDIS_TLS_CA_FILE needs a rediss:// REDIS_URL")
        return self

    @model_validator(mode="after")
    def _combinations(self) -> Settings:
        """Refuse combinations that cannot work; in production, missing provider credentials."""
        if self.worker_grace_seconds * 1000 >= self.lock_duration_ms / 2:
            raise ValueError("WORKER_GRACE_SECONDS must stay below half of LOCK_DURATION_MS")
        if self.twilio_configured and not (self.twilio_from_number or self.twilio_messaging_service_sid):
            raise ValueError("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID is required with Twilio")
        if self.sendgrid_configured and not self.sendgrid_from_email:
            raise ValueError("SENDGRID_FROM_EMAIL (a verified sender) is required with SendGrid")
        if self.openai_base_url and urlsplit(self.openai_base_url).scheme not in ("http", "https"):
            raise ValueError("OPENAI_BASE_URL must be an http:// or https:// URL")
        if self.production:
            missing = [
                name
                for name, present in (
                    ("TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN", self.twilio_configured),
                    ("SENDGRID_API_KEY", self.sendgrid_configured),
                )
                if not present
            ]
            if missing:
                raise ValueError(
                    f"NODE_ENV=production needs real providers; missing: {', '.join(missing)} "
                    "(the local outbox is for development only)"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _explicit_environ:
            return (_MappingSource(settings_cls, _explicit_environ[-1]),)
        return (
            env_settings,
            DotEnvSettingsSource(settings_cls, env_file=ENV_FILE, env_ignore_empty=True),
            DotEnvSettingsSource(settings_cls, env_file=EMBEDDED_ENV_FILE, env_ignore_empty=True),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``env`` alone, or (None) from the environment then ``.env``.

        Raises SettingsError naming the first broken variable and its rule (each further one on its own line).
        """
        if env is not None:
            _explicit_environ.append(env)
        try:
            return cls()
        except ValidationError as error:
            raise SettingsError("; ".join(_rule_broken(item) for item in error.errors())) from None
        finally:
            if env is not None:
                _explicit_environ.pop()

    @property
    def production(self) -> bool:
        return self.node_env == "production"

    @property
    def redis_endpoint(self) -> RedisUrlParts:
        """Host, port, credentials, TLS and database: REDIS_URL's where given, else REDIS_HOST/PORT/USERNAME/
        PASSWORD."""
        fallback = RedisUrlParts(
            self.redis_host, self.redis_port, self.redis_username, self.redis_password, tls=False, db=0
        )
        if self.redis_url is None:
            return fallback
        parts = redis_url_parts(self.redis_url)
        return attrs.evolve(
            parts,
            username=parts.username or self.redis_username,
            password=parts.password if parts.password is not None else self.redis_password,
        )

    @property
    def redis_tls(self) -> bool:
        return self.redis_endpoint.tls

    def redis_where(self) -> str:
        """Where Redis is, safe to log: the mode and its addresses, never credentials."""
        if self.redis_cluster_nodes:
            return f"cluster {self.redis_cluster_nodes}"
        if self.redis_sentinels:
            return f"sentinel {self.redis_sentinel_master} via {self.redis_sentinels}"
        endpoint = self.redis_endpoint
        return f"{'rediss' if endpoint.tls else 'redis'}://{endpoint.host}:{endpoint.port}/{endpoint.db}"

    @property
    def queue_prefixes(self) -> QueuePrefixes:
        """Each queue's key prefix (BULLMQ_QUEUE_PREFIXES, else BULLMQ_PREFIX); our own keys use BULLMQ_PREFIX."""
        own = parse_queue_prefixes(self.bullmq_queue_prefixes, QUEUES) if self.bullmq_queue_prefixes else {}
        return QueuePrefixes(self.bullmq_prefix, own)

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def sendgrid_configured(self) -> bool:
        return bool(self.sendgrid_api_key)

    def describe(self) -> dict[str, object]:
        """What the worker runs with, safe to log: hosts and flags, never secrets or credentials."""
        db = urlsplit(self.database_url)
        return {
            "node_env": self.node_env,
            "redis": self.redis_where(),
            "bullmq_prefix": self.bullmq_prefix,
            "bullmq_queue_prefixes": dict(self.queue_prefixes.own),
            "database": f"{db.hostname}:{db.port or 5432}{db.path}",
            "sentry": self.sentry_dsn is not None,
            "otel": self.otel_endpoint is not None,
            "sms_provider": "twilio" if self.twilio_configured else "outbox",
            "email_provider": "sendgrid" if self.sendgrid_configured else "outbox",
            "personalization": self.openai_model if self.openai_api_key else "off",
        }


@attrs.frozen
class RedisUrlParts:
    """A Redis URL taken apart (credentials kept out of ``repr``)."""

    host: str
    port: int
    username: str | None
    password: str | None = attrs.field(repr=False)
    tls: bool
    db: int


def redis_url_parts(url: str) -> RedisUrlParts:
    """``redis[s]://[user[:password]@]host[:port][/db]`` taken apart (user and password percent-decoded).

    Raises ValueError naming the broken rule, never the URL (it may hold a password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must be a redis:// or rediss:// URL")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("is malformed: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError("is malformed: it names no host")
    database = parts.path.strip("/") or "0"
    if not database.isdigit():
        raise ValueError("is malformed: the path must be a database number")
    return RedisUrlParts(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "rediss",
        db=int(database),
    )


def requested_production(environ: Mapping[str, str] | None = None) -> bool:
    """Whether NODE_ENV (environment, then .env) asks for production, read even when other settings are invalid:
    a refusal is then written as JSON too."""
    environ = os.environ if environ is None else environ
    value = environ.get("NODE_ENV", "").strip()
    if not value and ENV_FILE.exists():
        value = (dotenv_values(ENV_FILE).get("NODE_ENV") or "").strip()
    return value == "production"


def _rule_broken(item: Mapping[str, Any]) -> str:
    """One pydantic error as ``VARIABLE <rule>``: pydantic's message without the input value."""
    message = str(item["msg"]).removeprefix("Value error, ")
    if not item["loc"]:
        return message
    variable = str(item["loc"][0]).upper()
    if message.startswith(("must", "is ")):
        return f"{variable} {message}"
    return f"{variable}: {message[0].lower()}{message[1:]}"


# ------------------------------------------------------------------------------------------------ documentation


def declared() -> Iterator[tuple[str, FieldInfo, dict[str, Any]]]:
    """Each setting as (variable, field, extra: group, unit, secret, shown_default), in declaration order."""
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra
        assert isinstance(extra, dict)
        assert isinstance(field.validation_alias, str)
        yield field.validation_alias, field, extra


def _shown_default(field: FieldInfo, extra: Mapping[str, Any]) -> str:
    if "shown_default" in extra:
        return str(extra["shown_default"])
    return "" if field.default is None else str(field.default)


def _kind(field: FieldInfo) -> str:
    """The value's type in words: text, integer, number or one of (a listed choice)."""
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return "one of"
    present = [arg for arg in get_args(annotation) if arg is not type(None)]
    kinds: dict[object, str] = {int: "integer", float: "number"}
    return kinds.get(present[0] if present else annotation, "text")


def _rules(field: FieldInfo) -> str:
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥"}
    found = []
    for rule in field.metadata:
        for name, sign in words.items():
            if getattr(rule, name, None) is not None:
                found.append(f"{sign} {getattr(rule, name)}")
    return ", ".join(found)


def markdown_table() -> str:
    """The README's table: variable, default, type and unit, meaning."""
    lines = ["| Variable | Default | Type (unit, rule) | Meaning |", "|---|---|---|---|"]
    for variable, field, extra in declared():
        default = _shown_default(field, extra)
        kind = _kind(field)
        details = ", ".join(part for part in (extra["unit"], _rules(field)) if part)
        kind = f"{kind} ({details})" if details else kind
        secret = " Secret: never logged." if extra["secret"] else ""
        lines.append(
            f"| `{variable}` | {f'`{default}`' if default else 'none'} | {kind} | {field.description}.{secret} |"
        )
    return "\n".join(lines) + "\n"


def env_example() -> str:
    """``.env.example``: every variable commented out at its default, grouped, with its meaning."""
    lines = [
        "# ClientFlow Worker configuration, generated from entrypoints/settings.py (python -m entrypoints.settings",
        "# write). Copy to .env and uncomment what you change: every process reads its environment, then .env (the",
        "# environment wins). Every variable is optional in development.",
    ]
    group = None
    for variable, field, extra in declared():
        if extra["group"] != group:
            group = extra["group"]
            lines += ["", f"# ---- {group}"]
        unit = f" [{extra['unit']}]" if extra["unit"] else ""
        lines.append(f"# {field.description}{unit}")
        default = "" if field.default is None else str(field.default)
        lines.append(f'#{variable}="{default}"' if " " in default else f"#{variable}={default}")
    return "\n".join(lines) + "\n"


README = CHECKOUT / "README.md"
TABLE_START = "<!-- settings table: generated by `python -m entrypoints.settings write` -->\n"
TABLE_END = "<!-- end of settings table -->\n"


def readme_with_table(readme: str) -> str:
    """``readme`` with the generated table between its markers."""
    head, rest = readme.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    return f"{head}{TABLE_START}{markdown_table()}{TABLE_END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m entrypoints.settings check|markdown|env-example|write``."""
    parser = argparse.ArgumentParser(prog="python -m entrypoints.settings", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["check", "markdown", "env-example", "write"])
    action = parser.parse_args(argv).action
    if action == "check":
        try:
            Settings.from_env()
        except SettingsError as error:
            sys.stderr.write(f"configuration error: {error}\n")
            return EXIT_CONFIGURATION
        sys.stdout.write("settings valid\n")
    elif action == "markdown":
        sys.stdout.write(markdown_table())
    elif action == "env-example":
        sys.stdout.write(env_example())
    else:
        README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
        (CHECKOUT / ".env.example").write_text(env_example(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
