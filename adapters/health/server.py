"""The health and metrics HTTP server (aiohttp): liveness, readiness, queues, schedules, Prometheus and JSON.

Every ``/health/*`` answer is JSON with a ``status``; an unhealthy state answers 503 with a ``reason`` naming
what failed. ``/metrics`` always answers 200 while the process lives, reporting dependencies as gauges.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import attrs
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from adapters.health.probe import HealthProbe, Unhealthy
from adapters.observability.metrics import render_prometheus

PROBE = web.AppKey("probe", HealthProbe)


def _unhealthy(reason: str, **extra: object) -> web.Response:
    return web.json_response({"status": "unhealthy", "reason": reason, **extra}, status=503)


async def live(_request: web.Request) -> web.Response:
    """The process and its event loop answer."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    readiness = await request.app[PROBE].readiness()
    if not readiness.ok:
        return _unhealthy("; ".join(readiness.reasons), checks=readiness.checks)
    return web.json_response({"status": "ok", "checks": readiness.checks})


async def queues(request: web.Request) -> web.Response:
    try:
        stats, dead_letters = await request.app[PROBE].queue_stats()
    except Unhealthy as unhealthy:
        return _unhealthy(unhealthy.reason)
    owed = await request.app[PROBE].owed()
    return web.json_response(
        {
            "status": "ok",
            "queues": [attrs.asdict(q) for q in stats],
            "dead_letter_size": dead_letters,
            "dead_letter_owed": owed.dead_letter_owed if owed else None,
            "send_ledger_stuck": dict(owed.stuck_ledger) if owed else None,
        }
    )


async def scheduler(request: web.Request) -> web.Response:
    try:
        schedules = await request.app[PROBE].schedules()
    except Unhealthy as unhealthy:
        return _unhealthy(unhealthy.reason)
    body = [{**attrs.asdict(s.status), "problem": s.problem} for s in schedules]
    problems = [s.problem for s in schedules if s.problem]
    if problems:
        return _unhealthy("; ".join(problems), schedules=body)
    return web.json_response({"status": "ok", "schedules": body})


async def metrics(request: web.Request) -> web.Response:
    snapshot = await request.app[PROBE].snapshot()
    response = web.Response(body=render_prometheus(snapshot))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def metrics_json(request: web.Request) -> web.Response:
    return web.json_response((await request.app[PROBE].snapshot()).as_json())


def build_health_app(probe: HealthProbe) -> web.Application:
    app = web.Application()
    app[PROBE] = probe
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/queues", queues)
    app.router.add_get("/health/scheduler", scheduler)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/metrics.json", metrics_json)
    return app


@contextlib.asynccontextmanager
async def running_health_server(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) for the block; yields the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield site.port
    finally:
        await runner.cleanup()
