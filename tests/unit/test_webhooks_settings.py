"""The webhooks program's settings (issue 17 block of entrypoints/settings.py) and its start-up refusals."""

from __future__ import annotations

import pytest

from entrypoints.bootstrap import webhooks_problem
from entrypoints.settings import Settings, SettingsError
from tests.support.fakeservers.webhook_signing import SendGridKeys

TWILIO = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "tok", "TWILIO_FROM_NUMBER": "+15005550006"}
SENDGRID = {"SENDGRID_API_KEY": "SG.k", "SENDGRID_FROM_EMAIL": "a@example.com"}


def test_defaults_listen_on_loopback_with_bounded_bodies() -> None:
    """Loopback 9465, 1 MiB bodies, 5 min timestamp tolerance, reconciliation every minute, give up after 24 h."""
    s = Settings.from_env({})
    assert (s.webhooks_host, s.webhooks_port, s.webhooks_public_url) == ("127.0.0.1", 9465, None)
    assert (s.webhooks_max_body_bytes, s.webhooks_max_age_seconds) == (1_048_576, 300.0)
    assert (s.reconcile_interval_seconds, s.send_unconfirmed_after_hours) == (60.0, 24.0)


def test_variables_are_read_and_the_key_stays_out_of_repr() -> None:
    """Every WEBHOOKS_* variable lands in its setting; the verification key is not in the repr."""
    key = SendGridKeys().public_key
    s = Settings.from_env(
        {"WEBHOOKS_HOST": "0.0.0.0", "WEBHOOKS_PORT": "7711", "WEBHOOKS_PUBLIC_URL": "https://h.example.com",
         "SENDGRID_WEBHOOK_VERIFICATION_KEY": key, "WEBHOOKS_MAX_BODY_BYTES": "2048", "WEBHOOKS_MAX_AGE_SECONDS": "60",
         "RECONCILE_INTERVAL_SECONDS": "5", "SEND_UNCONFIRMED_AFTER_HOURS": "48"}
    )  # fmt: skip
    assert (s.webhooks_host, s.webhooks_port, s.webhooks_public_url) == ("0.0.0.0", 7711, "https://h.example.com")
    assert (s.webhooks_max_body_bytes, s.webhooks_max_age_seconds) == (2048, 60.0)
    assert (s.reconcile_interval_seconds, s.send_unconfirmed_after_hours) == (5.0, 48.0)
    assert key not in repr(s)
    assert webhooks_problem(s) is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({**TWILIO}, "WEBHOOKS_PUBLIC_URL"),
        ({"NODE_ENV": "production", **TWILIO, **SENDGRID, "WEBHOOKS_PUBLIC_URL": "https://h"}, "SENDGRID_WEBHOOK_"),
        ({"SENDGRID_WEBHOOK_VERIFICATION_KEY": "bm90IGEga2V5"}, "SENDGRID_WEBHOOK_VERIFICATION_KEY"),
    ],
    ids=["twilio-without-public-url", "production-without-key", "not-a-key"],
)
def test_what_the_program_refuses_names_the_setting(env: dict[str, str], named: str) -> None:
    """Twilio without a public URL, production SendGrid without a key, a key that is not one: refused by name."""
    problem = webhooks_problem(Settings.from_env(env))
    assert problem is not None
    assert named in problem


def test_a_body_limit_below_1_kib_is_refused() -> None:
    """WEBHOOKS_MAX_BODY_BYTES must leave room for a Twilio form."""
    with pytest.raises(SettingsError, match="WEBHOOKS_MAX_BODY_BYTES"):
        Settings.from_env({"WEBHOOKS_MAX_BODY_BYTES": "100"})
