"""The alert rules and the dashboard shipped in deploy/, checked by Debian's promtool: the rules load, every alert
fires in a unit test when its condition is produced, and our /metrics exposition has no lint problems."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from redis.asyncio import Redis

from adapters.observability.metrics import (
    MetricsRecorder,
    MetricsSnapshot,
    QueueStats,
    ScheduleStatus,
    read_recorded,
    render_prometheus,
)
from adapters.redis_keys import recorded_metrics_key
from tests.integration.prometheus.support import ALERT_TESTS, ALERTS, DASHBOARD, promtool


def test_the_alert_rules_load() -> None:
    """``promtool check rules`` accepts alerts.yml and finds one rule per alert of the issue's list."""
    checked = promtool("check", "rules", str(ALERTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


def test_every_alert_fires_in_its_unit_test() -> None:
    """``promtool test rules`` passes, and every alert of alerts.yml is expected to fire in at least one case."""
    alerts = set(re.findall(r"^\s*- alert: (\w+)", ALERTS.read_text(), re.MULTILINE))
    firing = set(re.findall(r"alertname: (\w+)\n\s*exp_alerts:\n\s*- exp_labels", ALERT_TESTS.read_text()))

    tested = promtool("test", "rules", str(ALERT_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert len(alerts) == 9
    assert alerts == firing


@pytest.fixture
async def full_snapshot() -> MetricsSnapshot:
    """A snapshot with every family we expose filled in (queues, schedules, counters, histograms, memory), the
    counters flushed through Redis as the workers do."""
    client, prefix = Redis(), f"test-promtool-{uuid.uuid4().hex}"
    recorder = MetricsRecorder(prefix)
    recorder.job_finished("reminders", "process-reminder", "completed", 0.2, 0.05)
    recorder.provider_message("twilio", "sms", "unknown", None)
    recorder.maintenance_removed("reminders", "completed", 3)
    try:
        await recorder.flush(client)
        recorded = await read_recorded(client, prefix)
    finally:
        await client.delete(recorded_metrics_key(prefix))
        await client.aclose()
    queue = QueueStats("reminders", {"wait": 2, "active": 1, "failed": 0}, 12.5, 2, 30.0, 0.5, 300.0)
    schedule = ScheduleStatus(
        "scan-appointments", "0 * * * *", "UTC", "2026-11-29T19:00:00+00:00", None, "2026-11-29T18:00:01+00:00", "ok", 4
    )
    return MetricsSnapshot(
        queues=[queue],
        dead_letter_size=3,
        schedules=[schedule],
        recorded=recorded,
        dependencies={"redis": True, "postgres": True},
        redis_memory={"used": 1_000_000, "max": 100_000_000},
    )


def test_our_exposition_passes_promtool_check_metrics(full_snapshot: MetricsSnapshot) -> None:
    """``promtool check metrics`` (Prometheus' own lint of names, help, units and counters) reports nothing."""
    checked = promtool("check", "metrics", stdin=render_prometheus(full_snapshot))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == checked.stderr.strip() == ""


def test_the_dashboard_and_the_rules_use_only_metrics_we_expose(full_snapshot: MetricsSnapshot) -> None:
    """Every ``clientflow_*`` name in the dashboard's queries and the alert rules is one /metrics renders."""
    text = render_prometheus(full_snapshot).decode()
    exposed = set(re.findall(r"^(clientflow_\w+?)(?:\{| )", text, re.MULTILINE))
    dashboard = json.loads(DASHBOARD.read_text())
    queries = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])

    used = set(re.findall(r"clientflow_\w+", queries + ALERTS.read_text()))

    assert used <= exposed, used - exposed
