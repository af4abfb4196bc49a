"""Benchmark: the answer time of every webhook route, one request at a time, beside ``GET /webhooks/live``.

Issue 17 asks that a webhook "validates, writes what it must durably (one transaction), and answers within a few
ms". ``webhooks_status_stages.py`` splits a Twilio status callback into its stages; this one times each route as a
provider meets it, signed as the provider signs, over a database of its own (``cf_bench_<random>``, dropped at the
end), served by the real app in a child process (uvloop, the acknowledging pool, Twilio's and SendGrid's signature
checks, durable commits):

- ``status``: a Twilio status callback that moves a SENT entry to delivered (one compare-and-set statement);
- ``inbound``: an inbound SMS, STOP and START in turn for each of 50 numbers, so every request changes consent
  (one transaction; the answer is empty TwiML);
- ``sendgrid``: a signed Event Webhook batch of 10 events (delivered, and a bounce that suppresses its address),
  each for its own email entry (one transaction per batch);
- ``live``: ``GET /webhooks/live``, the same server with no signature and no database (the baseline).

The routes are interleaved request by request, so a change of the machine's load falls on all of them alike.
Reports median / p90 / p99 ms per route and checks the outcome (every entry delivered, consent as last set).
Run: ``.venv/bin/python bench/webhooks_routes.py [--requests 1000]`` (requests per route).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import asyncpg
import uvloop
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.clock import SystemClock
from adapters.health.server import running_health_server
from adapters.observability.logging import configure_logging
from adapters.postgres import migrate
from adapters.postgres.feedback import PostgresDeliveryFeedback, open_acknowledging_database
from adapters.webhooks.sendgrid import SendGridSignature
from adapters.webhooks.server import WebhookHandlers, build_webhooks_app
from adapters.webhooks.twilio import TwilioWebhooks
from bench.webhooks_status_load import ADMIN_DSN, copy_ledger, dsn_for
from tests.support.fakeservers.webhook_signing import AUTH_TOKEN, PUBLIC_URL, SendGridKeys, twilio_headers

BATCH = 10
NUMBERS = 50
Send = Callable[[aiohttp.ClientSession], Awaitable[None]]


def serve(dsn: str, port: int, sendgrid_public_key: str) -> None:
    """The child process: the webhooks app on ``port`` until killed."""

    configure_logging("warn", production=True)

    async def main() -> None:
        database = await open_acknowledging_database(dsn)
        handlers = WebhookHandlers(
            feedback=PostgresDeliveryFeedback(database),
            clock=SystemClock(),
            twilio=TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL),
            sendgrid=SendGridSignature(sendgrid_public_key, max_age_seconds=300),
            max_body_bytes=1_048_576,
        )
        async with running_health_server(build_webhooks_app(handlers), "127.0.0.1", port):
            await asyncio.Event().wait()

    uvloop.run(main())


async def seed(dsn: str, sms: int, email: int) -> None:
    """``sms`` SMS entries SENT as ``SM<n>`` and ``email`` email entries SENT, all awaiting their delivery."""
    now = datetime.now(UTC)
    rows = [(f"bench:{n}:sms", "sms", f"SM{n:032d}") for n in range(sms)]
    rows += [(f"bench:{n}:email", "email", f"em{n}") for n in range(email)]
    records: list[tuple[object, ...]] = [
        (key, "org-1", f"c-{n}", channel, "transactional", "sent", now, now, message_id)
        for n, (key, channel, message_id) in enumerate(rows)
    ]
    await copy_ledger(dsn, records)


def status_requests(base: str, count: int) -> list[Send]:
    def one(n: int) -> Send:
        path = "/webhooks/twilio/status?" + urlencode({"ledger_key": f"bench:{n}:sms"})
        form = {"MessageSid": f"SM{n:032d}", "MessageStatus": "delivered", "AccountSid": "AC1"}
        return _signed_form(URL(base + path, encoded=True), form, twilio_headers(path, form), 204)

    return [one(n) for n in range(count)]


def inbound_requests(base: str, count: int) -> list[Send]:
    """STOP, START, STOP ... for each of NUMBERS numbers: every request is a consent change."""
    path = "/webhooks/twilio/inbound"

    def one(n: int) -> Send:
        number, turn = n % NUMBERS, n // NUMBERS
        body = "STOP" if turn % 2 == 0 else "START"
        form = {"MessageSid": f"SMin{n}", "From": f"+1415555{number:04d}", "To": "+15005550006", "Body": body}
        form["AccountSid"] = "AC1"
        return _signed_form(URL(base + path), form, twilio_headers(path, form), 200)

    return [one(n) for n in range(count)]


def sendgrid_requests(base: str, count: int, keys: SendGridKeys) -> list[Send]:
    """Batches of BATCH events (delivered, then a bounce as the last of each batch), each on its own entry."""

    def one(n: int) -> Send:
        events = []
        for k in range(n * BATCH, (n + 1) * BATCH):
            kind = "bounce" if k % BATCH == BATCH - 1 else "delivered"
            events.append(
                {
                    "email": f"contact{k}@example.org",
                    "timestamp": int(time.time()),
                    "event": kind,
                    "sg_event_id": f"ev-{k}",
                    "sg_message_id": f"em{k}.filter0001",
                    "ledger_key": f"bench:{k}:email",
                    **({"type": "bounce", "reason": "550 no such user"} if kind == "bounce" else {}),
                }
            )
        body = json.dumps(events).encode()
        return _signed_body(URL(base + "/webhooks/sendgrid/events"), body, keys)

    return [one(n) for n in range(count)]


def live_requests(base: str, count: int) -> list[Send]:
    async def send(http: aiohttp.ClientSession) -> None:
        async with http.get(base + "/webhooks/live") as answer:
            _expect(answer.status, 200, "live")

    return [send] * count


def _signed_form(url: URL, form: dict[str, str], headers: dict[str, str], expected: int) -> Send:
    async def send(http: aiohttp.ClientSession) -> None:
        async with http.post(url, data=form, headers=headers) as answer:
            await answer.read()
            _expect(answer.status, expected, url.path)

    return send


def _signed_body(url: URL, body: bytes, keys: SendGridKeys) -> Send:
    async def send(http: aiohttp.ClientSession) -> None:
        headers = {"Content-Type": "application/json", **keys.headers(body)}  # signed when sent: fresh timestamp
        async with http.post(url, data=body, headers=headers) as answer:
            _expect(answer.status, 204, url.path)

    return send


def _expect(status: int, expected: int, route: str) -> None:
    if status != expected:
        raise SystemExit(f"{route} answered {status}, expected {expected}")


async def timed(http: aiohttp.ClientSession, routes: dict[str, list[Send]]) -> dict[str, list[float]]:
    """Send the routes' requests interleaved one at a time; answer times in ms per route."""
    times: dict[str, list[float]] = {name: [] for name in routes}
    for batch in itertools.zip_longest(*routes.values()):
        for name, send in zip(routes, batch, strict=True):
            if send is None:
                continue
            started = time.perf_counter()
            await send(http)
            times[name].append((time.perf_counter() - started) * 1000)
    return times


async def outcome(dsn: str, sms: int, email: int, inbound: int) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        delivered = await connection.fetchval(
            "select count(*) from send_ledger where delivery_status = 'delivered' and key like 'bench:%'"
        )
        suppressed = await connection.fetchval("select count(*) from address_suppressions where channel = 'email'")
    finally:
        await connection.close()
    expected = sms + email * (BATCH - 1) // BATCH
    bounces = email // BATCH
    ok = delivered == expected and suppressed == bounces
    return (
        f"{delivered}/{expected} entries delivered, {suppressed}/{bounces} bounced addresses suppressed, "
        f"{inbound} consent changes answered: {'OK' if ok else 'WRONG'}"
    )


async def wait_until_serving(base: str, server: multiprocessing.process.BaseProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):  # a loaded machine may take many seconds to start the child
            try:
                await live_requests(base, 1)[0](http)
                return
            except aiohttp.ClientError:
                if not server.is_alive():
                    raise SystemExit("the webhooks server process died at start") from None
                await asyncio.sleep(0.1)
    raise SystemExit("the webhooks server did not answer within 60 s")


def report(times: dict[str, list[float]]) -> None:
    print("| route | requests | median ms | p90 ms | p99 ms | median x live |")
    print("|---|---|---|---|---|---|")
    live = statistics.median(times["live"])
    for name, values in times.items():
        cuts = statistics.quantiles(values, n=100)
        median = statistics.median(values)
        print(f"| {name} | {len(values)} | {median:.2f} | {cuts[89]:.2f} | {cuts[98]:.2f} | {median / live:.1f} |")


async def run(args: argparse.Namespace) -> None:
    name = f"cf_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'create database "{name}"')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    keys = SendGridKeys()
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(dsn_for(name), port, keys.public_key), daemon=True
    )
    count = args.requests
    try:
        await migrate(dsn_for(name))
        await seed(dsn_for(name), sms=count, email=count * BATCH)
        server.start()
        base = f"http://127.0.0.1:{port}"
        await wait_until_serving(base, server)
        routes = {
            "status": status_requests(base, count),
            "inbound": inbound_requests(base, count),
            "sendgrid": sendgrid_requests(base, count, keys),
            "live": live_requests(base, count),
        }
        load = os.getloadavg()[0]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
            times = await timed(http, routes)
        print(f"{count} requests per route, one at a time, interleaved; load average {load:.1f} at start")
        report(times)
        print(await outcome(dsn_for(name), count, count * BATCH, count))
    finally:
        server.kill()
        server.join()
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per route")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
