"""Settings from the environment: the Node worker's variable names, plus a few of our own (all optional).

The only module that reads ``os.environ``. Secrets are kept out of ``repr``; ``describe()`` gives a safe view
for start-up logs. A bad value fails at start-up with a message naming the variable, never echoing a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import attrs

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/clientflow"
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")


class SettingsError(ValueError):
    """A variable has a value the worker cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number") from None
    if not value >= minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


@attrs.frozen
class Settings:
    node_env: str = "development"
    log_level: str = "info"
    release: str = "clientflow-worker@0.1.0"

    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: str | None = attrs.field(default=None, repr=False)
    bullmq_prefix: str = "bull"

    database_url: str = attrs.field(default=DEFAULT_DATABASE_URL, repr=False)

    sentry_dsn: str | None = attrs.field(default=None, repr=False)
    otel_endpoint: str | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = attrs.field(default=None, repr=False)
    twilio_from_number: str | None = attrs.field(default=None, repr=False)
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str | None = None  # only for tests and local fakes
    twilio_status_callback_url: str | None = None
    sendgrid_api_key: str | None = attrs.field(default=None, repr=False)
    sendgrid_from_email: str | None = attrs.field(default=None, repr=False)
    sendgrid_host: str | None = None  # only for tests and local fakes
    sms_per_second: float = 10.0
    email_per_second: float = 50.0

    worker_concurrency: int = 10
    worker_grace_seconds: float = 12.0
    lock_duration_ms: int = 30_000
    stalled_interval_ms: int = 30_000
    send_settle_seconds: float = 60.0

    # -- issue 11 (exactly once under faults); to move into #12's declaration -------------------------------------
    # MAX_STALLED_COUNT: how often a job may stall (its worker died or its lock expired) before bullmq fails it.
    # A stall is not an attempt: every send is guarded by the ledger, so the limit only stops a job that kills its
    # worker each time; 1 (bullmq's default) dead-lettered reminders interrupted twice in the chaos soak.
    max_stalled_count: int = 10
    # OWED_AFTER_SECONDS: a send-ledger entry still CLAIMED/UNKNOWN this long after its last change is reported as
    # owed and stuck (health, metrics); above SEND_SETTLE_SECONDS plus a job's backoff.
    owed_after_seconds: float = 900.0

    health_host: str = "127.0.0.1"
    health_port: int = 9464

    scan_cron: str = "0 * * * *"
    snapshot_cron: str = "0 * * * *"
    schedule_tz: str = "UTC"

    @property
    def production(self) -> bool:
        return self.node_env == "production"

    @property
    def redis_url(self) -> str:
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"

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
            "redis": f"{self.redis_host}:{self.redis_port}",
            "bullmq_prefix": self.bullmq_prefix,
            "database": f"{db.hostname}:{db.port or 5432}{db.path}",
            "sentry": self.sentry_dsn is not None,
            "otel": self.otel_endpoint is not None,
            "sms_provider": "twilio" if self.twilio_configured else "outbox",
            "email_provider": "sendgrid" if self.sendgrid_configured else "outbox",
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        node_env = env.get("NODE_ENV", "development").strip() or "development"
        log_level = (env.get("LOG_LEVEL", "info").strip() or "info").lower()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        settings = cls(
            node_env=node_env,
            log_level=log_level,
            release=_opt(env, "RELEASE") or cls.release,
            redis_host=_opt(env, "REDIS_HOST") or "127.0.0.1",
            redis_port=_int(env, "REDIS_PORT", 6379, minimum=1),
            redis_password=_opt(env, "REDIS_PASSWORD"),
            bullmq_prefix=_opt(env, "BULLMQ_PREFIX") or "bull",
            database_url=_opt(env, "DATABASE_URL") or DEFAULT_DATABASE_URL,
            sentry_dsn=_opt(env, "SENTRY_DSN"),
            otel_endpoint=_opt(env, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            twilio_account_sid=_opt(env, "TWILIO_ACCOUNT_SID"),
            twilio_auth_token=_opt(env, "TWILIO_AUTH_TOKEN"),
            twilio_from_number=_opt(env, "TWILIO_FROM_NUMBER"),
            twilio_messaging_service_sid=_opt(env, "TWILIO_MESSAGING_SERVICE_SID"),
            twilio_base_url=_opt(env, "TWILIO_BASE_URL"),
            twilio_status_callback_url=_opt(env, "TWILIO_STATUS_CALLBACK_URL"),
            sendgrid_api_key=_opt(env, "SENDGRID_API_KEY"),
            sendgrid_from_email=_opt(env, "SENDGRID_FROM_EMAIL"),
            sendgrid_host=_opt(env, "SENDGRID_HOST"),
            sms_per_second=_float(env, "SMS_PER_SECOND", 10.0, minimum=0.1),
            email_per_second=_float(env, "EMAIL_PER_SECOND", 50.0, minimum=0.1),
            worker_concurrency=_int(env, "WORKER_CONCURRENCY", 10, minimum=1),
            worker_grace_seconds=_float(env, "WORKER_GRACE_SECONDS", 12.0, minimum=0.1),
            lock_duration_ms=_int(env, "LOCK_DURATION_MS", 30_000, minimum=1000),
            stalled_interval_ms=_int(env, "STALLED_INTERVAL_MS", 30_000, minimum=1000),
            send_settle_seconds=_float(env, "SEND_SETTLE_SECONDS", 60.0, minimum=1.0),
            max_stalled_count=_int(env, "MAX_STALLED_COUNT", 10, minimum=1),
            owed_after_seconds=_float(env, "OWED_AFTER_SECONDS", 900.0, minimum=1.0),
            health_host=_opt(env, "HEALTH_HOST") or "127.0.0.1",
            health_port=_int(env, "HEALTH_PORT", 9464, minimum=1),
            scan_cron=_opt(env, "SCAN_CRON") or "0 * * * *",
            snapshot_cron=_opt(env, "SNAPSHOT_CRON") or "0 * * * *",
            schedule_tz=_opt(env, "SCHEDULE_TZ") or "UTC",
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations that cannot work; in production, missing provider credentials."""
        if self.send_settle_seconds <= 15:
            # Above the providers' 10 s client timeout plus the rate limiter's 5 s wait: a request still in
            # flight must have landed before anyone reconciles it.
            raise SettingsError("SEND_SETTLE_SECONDS must exceed 15 (the provider timeout plus the rate-limit wait)")
        if urlsplit(self.database_url).scheme not in ("postgres", "postgresql"):
            raise SettingsError("DATABASE_URL must be a postgresql:// URL")
        if self.twilio_configured and not (self.twilio_from_number or self.twilio_messaging_service_sid):
            raise SettingsError("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID is required with Twilio")
        if self.sendgrid_configured and not self.sendgrid_from_email:
            raise SettingsError("SENDGRID_FROM_EMAIL (a verified sender) is required with SendGrid")
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
                raise SettingsError(
                    f"NODE_ENV=production needs real providers; missing: {', '.join(missing)} "
                    "(the local outbox is for development only)"
                )
