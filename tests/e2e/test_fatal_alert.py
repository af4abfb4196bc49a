"""A program that cannot start reaches FATAL, and the fatal-alert listener raises the alert (log line and Sentry)."""

from __future__ import annotations

import json
import pathlib
import socket
from typing import Any

import pytest

from tests.support.supervised import WORKER_PROGRAMS, Providers, eventually, supervised, system_env

pytestmark = pytest.mark.slow


def fatal_alerts(log: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "program_fatal"]


def test_a_program_that_cannot_start_goes_fatal_and_the_alert_fires(
    tmp_path: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    """The health server is configured with a port already taken: supervisord gives up on it (FATAL), the listener
    writes one JSON alert line naming it and sends one Sentry event; the workers keep running."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = system_env(providers, database_url, prefix, HEALTH_PORT=str(port), SENTRY_DSN=providers.sentry.dsn)
        with supervised(tmp_path, env) as system:
            eventually(lambda: system.states().get("health", ("?",))[0] == "FATAL", 240, "health FATAL")
            eventually(lambda: fatal_alerts(system.log("fatal-alert.log")) != [], 30, "the alert line")
            eventually(
                lambda: any("is FATAL" in json.dumps(e) for e in providers.sentry.events()), 30, "the Sentry event"
            )
            system.wait_workers_running()
            system.shutdown()
    [alert] = fatal_alerts(system.log("fatal-alert.log"))
    assert alert["program"] == "health"
    assert alert["level"] == "critical"
    alert_events = [e for e in providers.sentry.events() if "is FATAL" in json.dumps(e)]
    assert len(alert_events) == 1
    assert alert_events[0]["tags"]["program"] == "health"


def test_programs_with_a_missing_database_go_fatal_and_each_is_alerted_once(
    tmp_path: pathlib.Path, providers: Providers, prefix: str
) -> None:
    """DATABASE_URL names a database that does not exist: a permanent cause. Each worker and the webhooks server
    (which settles the send ledger) says so in one line and exits 78 within startsecs; supervisord gives up (FATAL)
    and the listener raises one alert per program; the health server (which reports the database, not needs it)
    keeps running."""
    missing = "postgresql://postgres@127.0.0.1:5432/cf_e2e_never_created"
    env = system_env(providers, missing, prefix)
    needing_the_database = (*WORKER_PROGRAMS, "webhooks")
    with supervised(tmp_path, env) as system:
        programs = [*(f"{program}:{program}-00" for program in WORKER_PROGRAMS), "webhooks"]
        eventually(lambda: all(system.states()[p][0] == "FATAL" for p in programs), 600, "every program FATAL")
        eventually(lambda: len(fatal_alerts(system.log("fatal-alert.log"))) == 5, 30, "five alert lines")
        system.wait_running("health")
        system.shutdown()
    assert sorted(a["program"] for a in fatal_alerts(system.log("fatal-alert.log"))) == sorted(needing_the_database)
    refusal = 'DATABASE_URL names database \\"cf_e2e_never_created\\", which does not exist on 127.0.0.1:5432'
    for log_name in ("worker-dunning-00.log", "webhooks.log"):
        assert refusal in system.log(log_name)
        assert "Traceback" not in system.log(log_name)
