"""Settings read the Node worker's environment variables and refuse what cannot work."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from entrypoints import settings as settings_module
from entrypoints.settings import Settings, SettingsError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_defaults_match_the_node_worker() -> None:
    """With an empty environment: local Redis on 6379, prefix bull, development, outbox providers."""
    settings = Settings.from_env({})
    assert (settings.redis_host, settings.redis_port, settings.bullmq_prefix) == ("127.0.0.1", 6379, "bull")
    assert settings.node_env == "development"
    assert settings.describe()["sms_provider"] == "outbox"


def test_the_default_release_is_a_string() -> None:
    """Without RELEASE, Sentry and the traces' service.version get the default release text (it once was the
    slotted class's member_descriptor, which OpenTelemetry warned about at every start-up)."""
    assert Settings.from_env({}).release == "clientflow-worker@0.1.0"
    assert Settings.from_env({"RELEASE": "clientflow-worker@2.0.0"}).release == "clientflow-worker@2.0.0"


def test_node_variable_names_are_read() -> None:
    """REDIS_*, DATABASE_URL, LOG_LEVEL and the provider variables land in their settings."""
    settings = Settings.from_env(
        {
            "REDIS_HOST": "redis.internal",
            "REDIS_PORT": "6380",
            "REDIS_PASSWORD": "p@ss word",
            "DATABASE_URL": "postgresql://app@db:5432/crm",
            "LOG_LEVEL": "WARN",
            "TWILIO_ACCOUNT_SID": "AC123",
            "TWILIO_AUTH_TOKEN": "tok",
            "TWILIO_FROM_NUMBER": "+15005550006",
        }
    )
    endpoint = settings.redis_endpoint
    assert (endpoint.host, endpoint.port, endpoint.password, endpoint.tls) == (
        "redis.internal",
        6380,
        "p@ss word",
        False,
    )
    assert settings.log_level == "warn"
    assert settings.twilio_configured


def test_secrets_stay_out_of_repr_and_description() -> None:
    """Neither repr() nor describe() shows a password, token, DSN or API key."""
    settings = Settings.from_env(
        {
            "REDIS_PASSWORD": "canary-redis-secret",
            "DATABASE_URL": "postgresql://u:canary-db-secret@db/x",
            "SENTRY_DSN": "https://canary-sentry-key@o1.ingest.sentry.io/1",
            "SENDGRID_API_KEY": "SG.canary-key",
            "SENDGRID_FROM_EMAIL": "ops@example.com",
        }
    )
    shown = repr(settings) + repr(settings.describe())
    for canary in ("canary-redis-secret", "canary-db-secret", "canary-sentry-key", "SG.canary-key"):
        assert canary not in shown


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_PORT": "abc"}, "REDIS_PORT"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}, "TWILIO_FROM_NUMBER"),
        ({"SENDGRID_API_KEY": "SG.x"}, "SENDGRID_FROM_EMAIL"),
        ({"NODE_ENV": "production"}, "NODE_ENV=production"),
        ({"SEND_SETTLE_SECONDS": "5"}, "SEND_SETTLE_SECONDS"),
        ({"STALLED_INTERVAL_MS": "10"}, "STALLED_INTERVAL_MS"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER: input should be 'always_on'"),
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG: input should be less than or equal to 1"),
        ({"OTEL_TRACES_SAMPLER_ARG": "-0.1"}, "OTEL_TRACES_SAMPLER_ARG: input should be greater than or equal to 0"),
        ({"OTEL_TRACES_SAMPLER_ARG": "10%"}, "OTEL_TRACES_SAMPLER_ARG: input should be a valid number"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    """A value the worker cannot use fails at start-up with a message naming the variable."""
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_the_environment_wins_over_dot_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env value applies when the environment has none (or an empty one); the environment's value wins."""
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_PORT=6390\nWORKER_CONCURRENCY=4\nBULLMQ_PREFIX=from-file\n", encoding="utf-8")
    monkeypatch.setattr(settings_module, "ENV_FILE", env_file)
    monkeypatch.setenv("REDIS_PORT", "6400")
    monkeypatch.setenv("BULLMQ_PREFIX", "")
    settings = Settings.from_env()
    assert (settings.redis_port, settings.worker_concurrency, settings.bullmq_prefix) == (6400, 4, "from-file")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "postgresql://app:canary-pw@db:54x2/crm"}, "DATABASE_URL is malformed: the port"),
        ({"DATABASE_URL": "mysql://app:canary-pw@db/crm"}, "DATABASE_URL must be a postgresql:// URL"),
        ({"DATABASE_URL": "postgresql:///crm"}, "DATABASE_URL is malformed: it names no host"),
        ({"REDIS_PORT": "70000"}, "REDIS_PORT: input should be less than or equal to 65535"),
        ({"WORKER_GRACE_SECONDS": "20"}, "WORKER_GRACE_SECONDS must stay below half of LOCK_DURATION_MS"),
        ({"REDIS_PASSWORD": "canary-pw", "REDIS_PORT": "x"}, "REDIS_PORT: input should be a valid integer"),
    ],
)
def test_a_refusal_names_the_variable_and_rule_never_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(message)
    assert "canary-pw" not in str(refused.value)
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "REDIS_PORT",
            "abc",
            "configuration error: REDIS_PORT: input should be a valid integer, unable to parse string as an integer",
        ),
        # A sampler name the OpenTelemetry SDK would only warn about (and replace by its default) stops the process.
        ("OTEL_TRACES_SAMPLER", "sometimes", "configuration error: OTEL_TRACES_SAMPLER: input should be 'always_on'"),
    ],
)
def test_a_bad_setting_exits_78_with_one_line(variable: str, value: str, line: str) -> None:
    """`python -m entrypoints.settings check` (as every process at start): one line naming the setting, exit 78
    (EX_CONFIG)."""
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.settings", "check"],
        env={"PATH": os.environ.get("PATH", ""), variable: value, "SUPERVISOR_ENABLED": "0"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 78
    (refusal,) = done.stderr.splitlines()
    assert refusal.startswith(line)


def test_the_trace_sampler_defaults_to_the_sdk_default_and_is_read_from_dot_env(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unset: parentbased_always_on at ratio 1.0 (the OpenTelemetry specification's defaults). Set in .env only, the
    sampler and its ratio apply (the SDK alone reads only the environment); the name is read in any case."""
    defaults = Settings.from_env({})
    assert (defaults.otel_traces_sampler, defaults.otel_traces_sampler_arg) == ("parentbased_always_on", 1.0)
    env_file = tmp_path / ".env"
    env_file.write_text("OTEL_TRACES_SAMPLER=ParentBased_TraceIdRatio\nOTEL_TRACES_SAMPLER_ARG=.25\n", encoding="utf-8")
    monkeypatch.setattr(settings_module, "ENV_FILE", env_file)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    settings = Settings.from_env()
    assert (settings.otel_traces_sampler, settings.otel_traces_sampler_arg) == ("parentbased_traceidratio", 0.25)
