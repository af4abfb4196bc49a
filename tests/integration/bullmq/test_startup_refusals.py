"""A worker that cannot be configured says why and exits 78 (EX_CONFIG), so supervisord retries, then alerts."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each case starts and waits out a worker process: 19-35 s measured

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("LOG_LEVEL", "verbose", "LOG_LEVEL"),
        ("NODE_ENV", "production", "NODE_ENV=production"),
        ("DATABASE_URL", "mysql://db/crm", "DATABASE_URL"),
    ],
)
def test_a_bad_setting_exits_78_naming_the_variable(variable: str, value: str, named: str) -> None:
    """The worker refuses to start with exit code 78 and one critical line naming the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SENDGRID_"))}
    env[variable] = value
    finished = subprocess.run(
        [sys.executable, "-m", "entrypoints.worker", "--queue", "reminders"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 78, output
    assert "worker_refused_to_start" in output
    assert named in output
    assert "Traceback" not in output


def test_the_health_server_refuses_bad_settings_with_78() -> None:
    """The health server, configured from the same environment, exits 78 naming the variable, no traceback."""
    env = dict(os.environ, LOG_LEVEL="verbose")
    finished = subprocess.run(
        [sys.executable, "-m", "entrypoints.health"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 78
    assert "LOG_LEVEL" in finished.stderr
    assert "Traceback" not in finished.stderr
