"""A real Prometheus (Debian's package) scrapes our health server's /metrics on loopback while a job from the npm
bullmq producer waits, loads our alert rules, answers queries about our metrics, and evaluates every dashboard
query without error."""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis

from adapters.health.probe import HealthProbe
from adapters.health.server import build_health_app, running_health_server
from tests.integration.prometheus.support import DASHBOARD, api, binary, promtool, running_prometheus
from tests.support.queues import add, delete_keys

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
QUEUES = ("reminders", "nurture", "dunning", "snapshots")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test-prometheus-{uuid.uuid4().hex}"
    yield name
    await delete_keys(name)


async def _eventually(query: str, within: float = 30.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + within
    while True:
        result: list[dict[str, object]] = (await api("/api/v1/query", query=query))["result"]
        if result:
            return result
        assert time.monotonic() < deadline, f"no result for {query}"
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_prometheus_scrapes_our_metrics_and_loads_the_rules(prefix: str, tmp_path: pathlib.Path) -> None:
    """Prometheus reads the waiting reminder's count through its query API, reports the target up, loads the nine
    alert rules in good health, sets ClientFlowNotReady pending (no worker heartbeats), and every dashboard query
    evaluates."""
    binary("prometheus")
    await add(prefix, "reminders", "process-reminder", {"orgId": "org-1"})
    client = Redis(socket_timeout=2)
    probe = HealthProbe(client, POSTGRES_DSN, prefix, QUEUES, QUEUES)
    try:
        async with running_health_server(build_health_app(probe), "127.0.0.1", 0) as port:
            with running_prometheus(tmp_path, port):
                [waiting] = await _eventually('clientflow_queue_jobs{queue="reminders", state="wait"}')
                [target_up] = await _eventually('up{job="clientflow"}')
                groups = (await api("/api/v1/rules"))["groups"]
                alerts = await _pending_alerts("ClientFlowNotReady")
                async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as got:
                    exposition = await got.read()
                for panel in json.loads(DASHBOARD.read_text())["panels"]:
                    for target in panel["targets"]:
                        await api("/api/v1/query", query=target["expr"].replace("$job", "clientflow"))
    finally:
        await client.aclose()

    assert waiting["value"][1] == "1"  # type: ignore[index]
    assert target_up["value"][1] == "1"  # type: ignore[index]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 9
    assert {rule["health"] for rule in rules} == {"ok"}
    assert alerts[0]["state"] in ("pending", "firing")
    linted = promtool("check", "metrics", stdin=exposition)
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")


async def _pending_alerts(name: str, within: float = 30.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + within
    while True:
        found = [a for a in (await api("/api/v1/alerts"))["alerts"] if a["labels"]["alertname"] == name]
        if found:
            return found
        assert time.monotonic() < deadline, f"{name} never became active"
        await asyncio.sleep(0.5)
