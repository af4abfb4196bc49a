"""Process main of the delivery webhooks server: ``python -m entrypoints.webhooks``.

Serves ``POST /webhooks/twilio/status``, ``/webhooks/twilio/inbound``, ``/webhooks/sendgrid/events`` and
``GET /webhooks/live`` on ``WEBHOOKS_HOST:WEBHOOKS_PORT`` (loopback by default, behind the operator's HTTPS proxy).
Beside it the process reconciles unsettled sends every ``RECONCILE_INTERVAL_SECONDS`` and flushes its metrics to
Redis. Exit codes: 0 after SIGTERM/SIGINT, 78 on a configuration problem (one line naming the setting), 70 when a
dependency cannot be reached at start-up.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

import structlog
import uvloop

from adapters.health.server import running_health_server
from adapters.observability.metrics import MetricsRecorder
from adapters.observability.sentry import report_alert
from adapters.periodic import run_periodically
from adapters.webhooks.server import build_webhooks_app
from domain.errors import ConfigurationError, TransientError
from domain.ports import UnsettledSends
from domain.reconciliation import UnknownSendReconciler
from entrypoints.bootstrap import Webhooks, observe, open_webhooks, stop_observing
from entrypoints.settings import Settings, SettingsError

EXIT_CONFIGURATION = 78
EXIT_UNREACHABLE = 70
# Ages reported for unsettled sends (the settle period is the first threshold worth looking at).
UNSETTLED_AGES = (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=6))

log = structlog.get_logger("entrypoints.webhooks")


async def reconcile_periodically(
    reconciler: UnknownSendReconciler,
    sends: UnsettledSends,
    metrics: MetricsRecorder,
    interval_seconds: float,
    stop: asyncio.Event,
) -> None:
    """One reconciliation pass every ``interval_seconds`` until ``stop``; a failed pass is logged and retried."""

    async def reconcile() -> None:
        try:
            report = await reconciler.run_once()
            ages = await sends.unsettled_by_age(reconciler.clock.now(), UNSETTLED_AGES)
        except TransientError as error:
            log.warning("reconciliation_failed", error=str(error))
        else:
            for (channel, age), count in ages.items():
                metrics.unsettled_sends(str(channel), int(age.total_seconds()), count)
            metrics.sends_reconciled("settled", report.settled)
            metrics.sends_reconciled("given_up", report.given_up)
            if report.given_up:
                log.error("sends_failed_unconfirmed", count=report.given_up)
                report_alert(f"{report.given_up} sends failed unconfirmed (never re-sent)", program="webhooks")
            if report.settled or report.left or report.lookups_failed:
                log.info(
                    "sends_reconciled",
                    settled=report.settled,
                    left=report.left,
                    lookups_failed=report.lookups_failed,
                    unsettled={f"{channel}_over_{int(age.total_seconds())}s": n for (channel, age), n in ages.items()},
                )

    await run_periodically(reconcile, interval_seconds, stop)


async def serve(webhooks: Webhooks, stop: asyncio.Event) -> None:
    """Serve, reconcile and flush metrics until ``stop`` is set."""
    settings = webhooks.settings
    app = build_webhooks_app(webhooks.handlers)
    async with running_health_server(app, settings.webhooks_host, settings.webhooks_port) as port:
        log.info(
            "webhooks_listening",
            host=settings.webhooks_host,
            port=port,
            twilio=webhooks.handlers.twilio is not None,
            sendgrid_signed=webhooks.handlers.sendgrid is not None,
        )
        if webhooks.handlers.sendgrid is None:
            log.warning("sendgrid_events_unsigned", hint="set SENDGRID_WEBHOOK_VERIFICATION_KEY")
        tasks = [
            asyncio.create_task(
                reconcile_periodically(
                    webhooks.reconciler, webhooks.feedback, webhooks.metrics, settings.reconcile_interval_seconds, stop
                )
            ),
            asyncio.create_task(webhooks.metrics.run(webhooks.redis, stop)),
        ]
        try:
            await stop.wait()
        finally:
            stop.set()
            _, late = await asyncio.wait(tasks, timeout=5.0)
            for task in late:
                task.cancel()


async def _main(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with open_webhooks(settings) as webhooks:
            await serve(webhooks, stop)
    except ConfigurationError as error:
        log.critical("webhooks_refused_to_start", error=str(error))
        return EXIT_CONFIGURATION
    except TransientError as error:
        log.critical("webhooks_dependency_unreachable", error=str(error))
        return EXIT_UNREACHABLE
    return 0


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"webhooks server refused to start: {error}", file=sys.stderr)  # noqa: T201  # before logging exists
        return EXIT_CONFIGURATION
    observe(settings, process="webhooks")
    try:
        return uvloop.run(_main(settings))
    finally:
        stop_observing()


if __name__ == "__main__":
    sys.exit(main())
