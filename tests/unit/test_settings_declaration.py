"""The one declaration of the settings: the README table, .env.example and supervisord.conf cannot drift from it."""

from __future__ import annotations

import configparser
import pathlib
import re

from entrypoints.settings import README, declared, env_example, readme_with_table

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Every variable read before the declaration existed (entrypoints/settings.py at the start of issue 12).
EARLIER_NAMES = {
    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "BULLMQ_PREFIX", "DATABASE_URL", "NODE_ENV", "LOG_LEVEL",
    "RELEASE", "SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID", "TWILIO_STATUS_CALLBACK_URL", "TWILIO_BASE_URL",
    "SENDGRID_API_KEY", "SENDGRID_FROM_EMAIL", "SENDGRID_HOST", "SMS_PER_SECOND", "EMAIL_PER_SECOND",
    "WORKER_CONCURRENCY", "WORKER_GRACE_SECONDS", "LOCK_DURATION_MS", "STALLED_INTERVAL_MS", "SEND_SETTLE_SECONDS",
    "SCAN_CRON", "SNAPSHOT_CRON", "SCHEDULE_TZ", "HEALTH_HOST", "HEALTH_PORT",
}  # fmt: skip


def test_the_readme_table_is_the_declaration() -> None:
    """README.md's configuration table is exactly what `python -m entrypoints.settings write` generates."""
    readme = README.read_text(encoding="utf-8")
    assert readme == readme_with_table(readme), "README table out of date: python -m entrypoints.settings write"


def test_env_example_is_the_declaration() -> None:
    """.env.example is generated from the declaration; every variable appears once, at its default."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert text == env_example(), ".env.example out of date: python -m entrypoints.settings write"
    names = re.findall(r"^#([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert sorted(names) == sorted(variable for variable, _, _ in declared())


def test_every_earlier_variable_name_still_works() -> None:
    assert {variable for variable, _, _ in declared()} >= EARLIER_NAMES


def test_each_setting_has_a_meaning_and_secrets_stay_out_of_repr() -> None:
    for variable, field, extra in declared():
        assert field.description, variable
        assert field.repr is not extra["secret"], variable


def test_supervisord_conf_takes_nothing_from_the_environment() -> None:
    """supervisord cannot default %(ENV_X)s: the bare command must not need any variable."""
    conf = (ROOT / "supervisord.conf").read_text(encoding="utf-8")
    assert "ENV_" not in conf
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    parser.read_string(conf)
    workers = [s for s in parser.sections() if s.startswith("program:worker-")]
    assert workers
    assert all(parser.get(s, "numprocs").isdigit() for s in workers)
    assert parser.get("include", "files") == "supervisord.d/*.conf"


def test_the_folders_supervisord_writes_to_are_in_git() -> None:
    """supervisord does not create its log or socket directory: a fresh clone must have them."""
    for folder in ("var/log", "var/run"):
        assert (ROOT / folder / ".gitignore").read_text(encoding="utf-8") == "*\n!.gitignore\n"
