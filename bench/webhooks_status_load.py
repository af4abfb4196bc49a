"""Benchmark: 10,000 signed Twilio status callbacks on loopback, out of order and duplicated, all applied once.

A child process serves the real webhooks app as the program runs it (uvloop, the acknowledging pool; Twilio
signature check, one compare-and-set statement per callback) over a database of its own (``cf_bench_<random>``,
dropped at the end). The load: for each of N/4 SMS ledger entries (half UNKNOWN, half SENT) the callbacks queued,
sent and delivered plus one duplicate, shuffled, sent by ``--concurrency`` clients at once. Baseline, in the same
run and alternated in pairs: as many requests to ``GET /webhooks/live`` (same server, no signature, no database).
Reports answer times (median, p99) of both and their ratio, requests per second, and checks the outcome: every
entry delivered, every UNKNOWN one settled to SENT.
Run: ``.venv/bin/python bench/webhooks_status_load.py [--callbacks 10000] [--concurrency 20] [--pairs 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import sys
import time
import uuid
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
from adapters.webhooks.server import WebhookHandlers, build_webhooks_app
from adapters.webhooks.twilio import TwilioWebhooks
from tests.support.fakeservers.webhook_signing import AUTH_TOKEN, PUBLIC_URL, twilio_headers

ADMIN_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
STATUSES = ("queued", "sent", "delivered")


def dsn_for(database: str) -> str:
    return f"{ADMIN_DSN.rpartition('/')[0]}/{database}"


def serve(dsn: str, port: int) -> None:
    """The child process: the webhooks app on ``port`` until killed."""

    configure_logging("warn", production=True)

    async def main() -> None:
        database = await open_acknowledging_database(dsn)
        handlers = WebhookHandlers(
            feedback=PostgresDeliveryFeedback(database),
            clock=SystemClock(),
            twilio=TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL),
            sendgrid=None,
            max_body_bytes=1_048_576,
        )
        async with running_health_server(build_webhooks_app(handlers), "127.0.0.1", port):
            await asyncio.Event().wait()

    uvloop.run(main())


LEDGER_COLUMNS = (
    "key", "org_id", "contact_id", "channel", "purpose", "state", "claimed_at", "updated_at", "provider_message_id",
)  # fmt: skip


async def copy_ledger(dsn: str, records: list[tuple[object, ...]]) -> None:
    """Write send-ledger rows (values in LEDGER_COLUMNS' order) with one COPY."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table("send_ledger", records=records, columns=list(LEDGER_COLUMNS))
    finally:
        await connection.close()


async def seed(dsn: str, entries: int) -> list[str]:
    keys = [f"reminder:3h:bench-{n}:sms" for n in range(entries)]
    now = datetime.now(UTC)
    records: list[tuple[object, ...]] = [
        (key, "org-1", f"c-{n}", "sms", "transactional", "unknown" if n % 2 else "sent", now, now,
         None if n % 2 else f"SM{n:032d}")
        for n, key in enumerate(keys)
    ]  # fmt: skip
    await copy_ledger(dsn, records)
    return keys


def callbacks(keys: list[str], total: int) -> list[tuple[str, dict[str, str]]]:
    """(path with query, form) for each callback: every status of every key plus duplicates, shuffled."""
    found = []
    for n, key in enumerate(keys):
        path = "/webhooks/twilio/status?" + urlencode({"ledger_key": key})
        for status in STATUSES:
            found.append((path, {"MessageSid": f"SM{n:032d}", "MessageStatus": status, "AccountSid": "AC1"}))
    rng = random.Random(17)
    while len(found) < total:
        found.append(rng.choice(found))
    rng.shuffle(found)
    return found


async def fire(
    base: str, requests: list[tuple[str, dict[str, str]] | None], concurrency: int
) -> tuple[list[float], float]:
    """Send every request (None: GET /webhooks/live); answer times in ms and the wall time in s."""
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[str, dict[str, str]] | None] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    signed = {id(r): twilio_headers(r[0], r[1]) for r in requests if r is not None}

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            request = queue.get_nowait()
            started = time.perf_counter()
            if request is None:
                async with http.get(base + "/webhooks/live") as answer:
                    assert answer.status == 200
            else:
                url = URL(base + request[0], encoded=True)
                async with http.post(url, data=request[1], headers=signed[id(request)]) as answer:
                    assert answer.status == 204, answer.status
            latencies.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def check(dsn: str, entries: int) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "select count(*) filter (where delivery_status = 'delivered') as delivered,"
            " count(*) filter (where state = 'sent') as sent from send_ledger"
        )
    finally:
        await connection.close()
    assert row is not None
    ok = row["delivered"] == entries and row["sent"] == entries
    return f"{row['delivered']}/{entries} delivered, {row['sent']}/{entries} SENT: {'OK' if ok else 'WRONG'}"


async def run(args: argparse.Namespace) -> None:
    name = f"cf_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'create database "{name}"')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(dsn_for(name), port), daemon=True)
    try:
        await migrate(dsn_for(name))
        server.start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):  # a loaded machine may take many seconds to start the child
            try:
                await fire(base, [None], 1)
                break
            except aiohttp.ClientError:
                if not server.is_alive():
                    raise SystemExit("the webhooks server process died at start") from None
                await asyncio.sleep(0.1)
        else:
            raise SystemExit("the webhooks server did not answer within 60 s")
        print(f"{args.callbacks} callbacks per run, concurrency {args.concurrency}, {args.pairs} pair(s)")
        for pair in range(args.pairs):
            connection = await asyncpg.connect(dsn_for(name))
            await connection.execute("truncate send_ledger")
            await connection.close()
            keys = await seed(dsn_for(name), args.callbacks // 4)
            hooks, hooks_wall = await fire(base, callbacks(keys, args.callbacks), args.concurrency)
            outcome = await check(dsn_for(name), len(keys))
            live, live_wall = await fire(base, [None] * args.callbacks, args.concurrency)
            print(
                f"pair {pair + 1}: status callbacks median {statistics.median(hooks):.2f} ms p99 {p99(hooks):.2f} ms"
                f" ({args.callbacks / hooks_wall:,.0f}/s); /webhooks/live median {statistics.median(live):.2f} ms"
                f" p99 {p99(live):.2f} ms ({args.callbacks / live_wall:,.0f}/s); p99 ratio"
                f" {p99(hooks) / p99(live):.1f}x; {outcome}"
            )
    finally:
        server.kill()
        server.join()
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
