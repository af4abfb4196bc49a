"""The webhooks program as a process: a misconfiguration is one line naming the setting and exit code 78."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.postgres import ADMIN_DSN
from tests.support.supervised import ROOT

pytestmark = pytest.mark.slow  # each case starts a Python process (~5-10 s on a loaded machine)


def run_webhooks(**env: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SENDGRID_", "WEBHOOKS_", "NODE_"))}
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.webhooks"],
        env={**keep, "DATABASE_URL": ADMIN_DSN, "WEBHOOKS_PORT": "7701", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "secret-token-value",
          "TWILIO_FROM_NUMBER": "+15005550006"}, "WEBHOOKS_PUBLIC_URL"),
        ({"SENDGRID_WEBHOOK_VERIFICATION_KEY": "not-a-key"}, "SENDGRID_WEBHOOK_VERIFICATION_KEY"),
        ({"NODE_ENV": "production", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "secret-token-value",
          "TWILIO_FROM_NUMBER": "+15005550006", "WEBHOOKS_PUBLIC_URL": "https://hooks.example.com",
          "SENDGRID_API_KEY": "SG.key", "SENDGRID_FROM_EMAIL": "a@example.com"}, "SENDGRID_WEBHOOK_VERIFICATION_KEY"),
        ({"WEBHOOKS_MAX_BODY_BYTES": "ten"}, "WEBHOOKS_MAX_BODY_BYTES"),
    ],
    ids=["twilio-without-public-url", "bad-sendgrid-key", "production-unsigned-sendgrid", "bad-number"],
)  # fmt: skip
def test_a_misconfiguration_exits_78_naming_the_setting(env: dict[str, str], setting: str) -> None:
    """Exit 78 (supervisord retries, then FATAL and the alert); the output names the setting, never a secret."""
    done = run_webhooks(**env)
    output = done.stdout + done.stderr
    assert done.returncode == 78, output
    assert setting in output
    assert "secret-token-value" not in output
